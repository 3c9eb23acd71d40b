"""The envkit_reset marker on the fake engine: which tests' environments are reset after them, however the
test came by ``envkit_env`` (tests/plugin/test_reset_marker.py resets a real snapshot)."""

from __future__ import annotations

import pytest

from envkit.environment import Environment
from tests.unit.test_plugin_session import Engine, engine, run

__all__ = ["engine"]  # the fixture, used by name

TESTS = """
import pytest

@pytest.fixture
def outputs(request):                       # docs/runners.md: the plugin's outputs, asked for by name
    return request.getfixturevalue("envkit_env").outputs

@pytest.fixture
def web(envkit_env):
    return envkit_env

@pytest.mark.envkit_reset("web")
def test_argument(envkit_env):
    pass

@pytest.mark.envkit_reset("web")
def test_through_a_fixture(web):
    pass

@pytest.mark.envkit_reset("web")
def test_through_getfixturevalue(outputs):
    assert outputs["GREETING"] == "hello"

@pytest.mark.envkit_reset("web")
def test_no_environment():
    pass

def test_not_marked(outputs):
    pass
"""


@pytest.mark.parametrize("scope", ["session", "function"])
def test_a_marked_test_is_reset_after_it_however_it_asked_for_envkit_env(
        pytester: pytest.Pytester, engine: Engine, monkeypatch: pytest.MonkeyPatch, scope: str) -> None:
    resets: list[tuple[str, ...]] = []
    monkeypatch.setattr(Environment, "reset", lambda self, *services, **kw: resets.append(services) or {})
    pytester.makepyfile(test_a=TESTS)
    run(pytester, engine, f"--envkit-scope={scope}").assert_outcomes(passed=5)
    # With one environment per test, the one a test asked for by name is already gone: nothing to reset.
    assert resets == [("web",)] * (3 if scope == "session" else 2)
    assert engine.left() == []
