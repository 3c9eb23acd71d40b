"""The plugin's pool: what a marker asks for, which node owns an environment, and the keys that decide
when two tests share one. Real pytest nodes (collected in-process by pytester), no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.pytest_plugin.pool import Pool, Want, owner_in_chain

MARKED = """
import pytest

def test_plain(envkit_env):
    pass

@pytest.mark.envkit("bp/hello")
class TestMarked:
    def test_one(self, envkit_env):
        pass

    @pytest.mark.envkit("bp/shop", scope="function")
    def test_own(self, envkit_env):
        pass

@pytest.mark.envkit("bp/hello", scope="module")
def test_module_wide(envkit_env):
    pass

def test_without_the_fixture():
    pass
"""


@pytest.fixture
def items(pytester: pytest.Pytester) -> dict[str, pytest.Item]:
    found = pytester.getitems(MARKED)
    return {item.nodeid.split("::", 1)[1]: item for item in found}


def want_of(item: pytest.Item) -> Want | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("envkit_env") if callspec else None


def test_a_mark_asks_for_its_blueprint_scope_and_owner(items: dict[str, pytest.Item], pytester: pytest.Pytester) -> None:
    root = pytester.path
    module = items["test_plain"].nodeid.split("::")[0]
    assert want_of(items["test_plain"]) is None  # unmarked: the default environment, no param
    assert want_of(items["test_without_the_fixture"]) is None
    klass = want_of(items["TestMarked::test_one"])
    assert klass == Want(root / "bp" / "hello", "class", f"{module}::TestMarked")
    own = want_of(items["TestMarked::test_own"])  # the closest mark wins, with its own scope
    assert own is not None and (own.blueprint, own.scope, own.owner) == (
        root / "bp" / "shop", "function", items["TestMarked::test_own"].nodeid)
    assert want_of(items["test_module_wide"]) == Want(root / "bp" / "hello", "module", module)


def test_marked_test_ids_do_not_change(items: dict[str, pytest.Item]) -> None:
    assert "TestMarked::test_one" in items and "test_module_wide" in items


def test_a_test_scoped_want_never_equals_another_so_pytest_sets_it_up_again(tmp_path: Path) -> None:
    a = Want(tmp_path, "function", "t.py::test_a")
    assert a != Want(tmp_path, "function", "t.py::test_a")
    assert Want(tmp_path, "module", "t.py") == Want(tmp_path, "module", "t.py")
    assert Want(tmp_path, "module", "t.py") != Want(tmp_path, "module", "u.py")


def test_the_owner_is_found_in_the_chain_of_the_fixture_node(items: dict[str, pytest.Item]) -> None:
    one = items["TestMarked::test_one"]
    klass = one.getparent(pytest.Class)
    want = want_of(one)
    assert want is not None and klass is not None
    assert owner_in_chain(one, want) is klass  # envkit_env function-scoped: the class owns it
    assert owner_in_chain(klass, want) is klass  # envkit_env class-scoped
    session = one.session
    assert owner_in_chain(session, want) is None  # a session-wide fixture: pytest ends it per param
    own = items["TestMarked::test_own"]
    own_want = want_of(own)
    assert own_want is not None
    assert owner_in_chain(own, own_want) is own
    assert owner_in_chain(session, own_want) is None


def test_pool_keys_share_an_environment_within_its_owner_and_not_beyond(items: dict[str, pytest.Item]) -> None:
    pool = Pool()
    one, own = items["TestMarked::test_one"], items["TestMarked::test_own"]
    klass = one.getparent(pytest.Class)
    module = one.getparent(pytest.Module)
    assert klass is not None and module is not None
    want = want_of(one)
    # The default environment, session scope: one key for the session node, whoever asks.
    assert pool.key("bp", one.session, None) == pool.key("bp", one.session, None) == ("bp", "")
    # Module scope: a key per module.
    assert pool.key("bp", module, None) == ("bp", module.nodeid)
    # A class mark: every test of the class gets the class's key.
    assert pool.key("hello", owner_in_chain(one, want), want) == ("hello", klass.nodeid)  # type: ignore[arg-type]
    # No owner in the chain: a fresh key every time (the fixture's own end releases it).
    own_want = want_of(own)
    first = pool.key("shop", None, own_want)
    second = pool.key("shop", None, own_want)
    assert first != second and first[:2] == second[:2] == ("shop", own.nodeid)
