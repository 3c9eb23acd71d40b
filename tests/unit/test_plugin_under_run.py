"""The plugin under `envkit run BLUEPRINT -- pytest` (ENVKIT_RUN set): the tests use that run, with no
flag, instead of bringing a second stack up from the ini file's blueprint; the run is never removed."""

from __future__ import annotations

import pytest

import envkit
from envkit.backends.fake import FakeBackend

from .test_plugin_session import BLUEPRINT, CONFTEST, TWO_TESTS, Engine


@pytest.fixture
def engine(pytester: pytest.Pytester) -> Engine:
    fake = FakeBackend(images={"nginx:1"})
    pytester.path.joinpath("bp").mkdir()
    pytester.path.joinpath("bp", "blueprint.yaml").write_text(BLUEPRINT)
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nenvkit_blueprint = bp\n")  # what a project has: the ini names the blueprint
    return Engine(fake)


def test_under_envkit_run_the_run_is_used_and_left(pytester: pytest.Pytester, engine: Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    outer = envkit.up(pytester.path / "bp", name="outer-1", backend=engine.fake)
    monkeypatch.setenv("ENVKIT_RUN", "outer-1")
    pytester.makepyfile(test_a=TWO_TESTS)
    created = len([c for c in engine.fake.calls if c[0] == "create_container"])
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v", plugins=[engine])
    result.assert_outcomes(passed=2)
    assert set(engine.runs().values()) == {"outer-1"}
    assert len([c for c in engine.fake.calls if c[0] == "create_container"]) == created  # no second stack
    result.stdout.fnmatch_lines(["envkit: using run outer-1 of `envkit run` (ENVKIT_RUN)",
                                 "run outer-1: reuse, session scope, reuse in *s, left running"])
    assert "PytestConfigWarning" not in result.stdout.str()
    assert engine.fake.list_resources({"io.envkit.run": "outer-1"})  # still there: envkit run removes it
    outer.down()


def test_an_explicit_blueprint_still_wins(pytester: pytest.Pytester, engine: Engine,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_RUN", "outer-2")  # not even there: not looked at
    pytester.makepyfile(test_a=TWO_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--envkit-blueprint={pytester.path / 'bp'}",
                                          plugins=[engine])
    result.assert_outcomes(passed=2)
    assert "outer-2" not in set(engine.runs().values())
    assert engine.left() == []


def test_a_gone_envkit_run_says_where_the_name_came_from(pytester: pytest.Pytester, engine: Engine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_RUN", "gone-3")
    pytester.makepyfile(test_a=TWO_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[engine])
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*envkit: reuse:gone-3 (ENVKIT_RUN, set by `envkit run`): no run 'gone-3'*"])
