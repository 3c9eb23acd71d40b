"""The envkit_reset marker on the fake engine: which tests' environments are reset after them, however the
test came by ``envkit_env`` (tests/plugin/test_reset_marker.py resets a real snapshot)."""

from __future__ import annotations

import pytest

import envkit
from envkit import labels as L
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


class Log:
    """The order of things in the inner session: the resets (on the fake engine) and the tests' bodies."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @pytest.fixture
    def log(self) -> list[str]:
        return self.events


KEEP_TESTS = """
import pytest

@pytest.mark.envkit_reset("web")
def test_a_fails(envkit_env, log):
    log.append("a")
    assert False, "the test wrote something wrong"

def test_b_after(envkit_env, log):
    log.append("b")
"""


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    found = Log()
    monkeypatch.setattr(Environment, "reset",
                        lambda self, *services, **kw: found.events.append(f"reset {','.join(services)}") or {})
    return found


def _run(pytester: pytest.Pytester, engine: Engine, log: Log, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--envkit-blueprint={pytester.path / 'bp'}",
                                        *args, plugins=[engine, log])


def test_keep_skips_the_reset_after_a_failed_test_and_the_kept_run_shows_its_writes(
        pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    pytester.makepyfile(test_a=KEEP_TESTS)
    result = _run(pytester, engine, log, "--envkit-keep", "-x")  # -x: the failed test is the last one
    result.assert_outcomes(failed=1)
    assert log.events == ["a"]  # not reset: the kept run is as the test left it
    runs = sorted({r.labels[L.RUN] for r in engine.fake.list_resources({L.MANAGED: "true"})})
    assert len(runs) == 1
    result.stdout.fnmatch_lines([f"kept run {runs[0]} after a failure; remove it with: envkit down {runs[0]}",
                                 f"not reset after failed test test_a.py::test_a_fails: run {runs[0]} is kept "
                                 "(--envkit-keep); a later test using it gets it reset first"])
    envkit.down(runs, backend=engine.fake)
    assert engine.left() == []


def test_keep_pays_the_skipped_reset_before_the_next_test(pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    pytester.makepyfile(test_a=KEEP_TESTS)
    result = _run(pytester, engine, log, "--envkit-keep")
    result.assert_outcomes(passed=1, failed=1)
    assert log.events == ["a", "reset web", "b"]  # test_b never sees test_a's writes
    runs = {r.labels[L.RUN] for r in engine.fake.list_resources({L.MANAGED: "true"})}
    assert len(runs) == 1  # kept all the same (a test using it failed)
    envkit.down(sorted(runs), backend=engine.fake)


def test_without_keep_a_failed_test_is_reset_after_it(pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    pytester.makepyfile(test_a=KEEP_TESTS)
    result = _run(pytester, engine, log)
    result.assert_outcomes(passed=1, failed=1)
    assert log.events == ["a", "reset web", "b"]
    assert "not reset" not in result.stdout.str()
    assert engine.left() == []


def test_a_reset_of_the_shared_environment_is_refused(pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    # Without -n as with it: a configuration that passes on one process does not break under xdist.
    pytester.makepyfile(test_a="""
import pytest

@pytest.fixture
def outputs(request):
    return request.getfixturevalue("envkit_env").outputs

@pytest.mark.envkit_reset("web")
def test_argument(envkit_env, log):
    log.append("argument")

@pytest.mark.envkit_reset("web")
def test_by_name(outputs, log):
    log.append("by name")

@pytest.mark.envkit("other", scope="function")
@pytest.mark.envkit_reset("greeter")
def test_own_environment(envkit_env, log):
    log.append("own")
""")
    result = _run(pytester, engine, log, "--envkit-shared")
    result.assert_outcomes(passed=2, errors=2)  # by name: known after the body only, refused in teardown
    assert log.events == ["by name", "own", "reset greeter"]  # the shared one is never reset
    result.stdout.fnmatch_lines(["*envkit: test_a.py::test_argument: envkit_reset of the shared environment: "
                                 "--envkit-shared shares one run among the pytest-xdist workers*"])
    assert engine.left() == []


def test_the_ini_reset_with_shared_is_refused_at_start(pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    pytester.makeini("[pytest]\nenvkit_reset = *\n")
    pytester.makepyfile(test_a="def test_x(envkit_env):\n    pass\n")
    result = _run(pytester, engine, log, "--envkit-shared")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*envkit_reset (ini) with --envkit-shared: --envkit-shared shares one run*"])
    assert engine.left() == []


def test_the_envkit_markers_reset_resets_its_environment_after_every_test(
        pytester: pytest.Pytester, engine: Engine, log: Log) -> None:
    # As the issue put it: an option on the environment itself, reset="function" (or the services).
    pytester.makepyfile(test_a="""
import pytest

pytestmark = pytest.mark.envkit("other", reset="function")

def test_one(envkit_env, log):
    log.append("one")

@pytest.mark.envkit_reset("greeter")               # the closer, explicit marker wins
def test_two(envkit_env, log):
    log.append("two")

@pytest.mark.envkit("other", reset=["greeter"])
def test_three(envkit_env, log):
    log.append("three")

@pytest.mark.envkit("other", reset=None)           # none for this one
def test_four(envkit_env, log):
    log.append("four")
""")
    result = _run(pytester, engine, log)
    result.assert_outcomes(passed=4)
    assert log.events == ["one", "reset ", "two", "reset greeter", "three", "reset greeter", "four"]
    assert engine.left() == []


@pytest.mark.parametrize("value", ["''", "3", "['db', 1]", "[]"])
def test_a_reset_the_envkit_marker_cannot_take_is_a_collection_error(
        pytester: pytest.Pytester, engine: Engine, log: Log, value: str) -> None:
    pytester.makepyfile(test_a=f"""
import pytest

@pytest.mark.envkit("other", reset={value})
def test_x(envkit_env):
    pass
""")
    result = _run(pytester, engine, log)
    assert result.ret != 0 and log.events == []
    result.stdout.fnmatch_lines(["*@pytest.mark.envkit: reset=*: use reset=\"function\"*"])


FAULT_TESTS = """
import pytest

@pytest.mark.envkit_reset("web")
@pytest.mark.envkit_fault("web", "stop")
def test_a_faulted(envkit_env, log):
    log.append("a")

def test_b_after(envkit_env, log):
    log.append("b")
"""


def test_a_tests_faults_are_healed_before_its_reset(pytester: pytest.Pytester, engine: Engine, log: Log,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The reset came first: it made the service again from the snapshot, waited it ready and put the
    # stop back on the new container (the fault is still the test's); the heal then only started it,
    # without waiting, so the next test met a service still starting. Healed first, the reset is the last
    # word: the next test gets the seeded state, ready.
    from envkit.faults.session import ActiveFault

    heal = ActiveFault.heal
    monkeypatch.setattr(ActiveFault, "heal", lambda self: log.events.append("heal") or heal(self))
    pytester.makepyfile(test_a=FAULT_TESTS)
    _run(pytester, engine, log).assert_outcomes(passed=2)
    assert log.events == ["a", "heal", "reset web", "b"]
    assert engine.left() == []


def test_a_reset_without_snapshots_says_how_pytest_turns_them_on(pytester: pytest.Pytester, engine: Engine) -> None:
    # A Compose-seeded db snapshots only when asked (docs/snapshots.md): the advice is pytest's flag, not `envkit up`'s
    pytester.makepyfile(test_a="import pytest\n\n@pytest.mark.envkit_reset()\ndef test_a(envkit_env):\n    pass\n")
    result = run(pytester, engine)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*has no service started with a snapshot*; under pytest: --envkit-snapshot "
                                 "(ini: envkit_snapshot = true)"])
    assert engine.left() == []
