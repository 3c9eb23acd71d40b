"""Reset between tests: ``@pytest.mark.envkit_reset("db")``, or ini ``envkit_reset = db`` for every test.

After each such test that used ``envkit_env``, the named services (none named: every service of the
run that has a snapshot) are put back to their seeded state (``Environment.reset``): the test's writes
never reach the next test, while the environment itself — every other service, the ports, the outputs
— stays up for the rest of its scope. See docs/snapshots.md.

With ``--envkit-keep`` a failed test's run is kept for inspection, so the reset after it is skipped (the
summary says so): the kept run shows what the test wrote. The reset is owed, not dropped: the next test
of the session (``PluginState.pytest_runtest_setup``) pays it first while the environment is still in use,
so no test sees another's writes; when the environment's scope ended with the failed test (the last of
its module or session, ``-x``), the run is kept as the test left it.

The environment shared by xdist workers (``--envkit-shared``) is never reset: a reset restarts or swaps
a service under the other workers' running tests. ``check_settings`` refuses the ini key with it at
start-up; a marked test using it errors before it runs. The same holds for a reused run
(``--envkit-reuse``, or ``envkit run``'s ENVKIT_RUN) under more than one xdist worker: every worker
attaches to that one run. On one process a reused run is reset as usual.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envkit.pytest_plugin import report
from envkit.pytest_plugin.pool import Entry, reset_of
from envkit.pytest_plugin.session import FAILED, STATE, requested_env
from envkit.pytest_plugin.settings import Settings

__all__ = ["REUSE_ADVICE", "SHARED_ADVICE", "add_options", "check_settings", "envkit_reset_after",
           "services_to_reset"]

MARKER = ("envkit_reset(*services): after the test, put these services of envkit_env (default: every one "
          "with a snapshot) back to their seeded state")


def add_options(parser: pytest.Parser) -> None:
    parser.addini("envkit_reset", "Services of envkit_env reset after every test that uses it "
                  "(comma-separated; `*`: every one with a snapshot; default: none).", default="")


SHARED_ADVICE = ("--envkit-shared shares one run among the pytest-xdist workers, and a reset would restart "
                 "its services under the other workers' running tests. Drop --envkit-shared (each worker gets "
                 "an environment of its own, and resets are safe), or give the tests that reset an environment "
                 "of their own with @pytest.mark.envkit(BLUEPRINT) on their module or class")


REUSE_ADVICE = ("every pytest-xdist worker attaches to that one run, and a reset would restart its services "
                "under the other workers' running tests. Run the tests that reset without -n, let each worker "
                "bring an environment of its own up (--envkit-blueprint instead of --envkit-reuse, or pytest "
                "outside `envkit run`), or give the tests that reset an environment of their own with "
                "@pytest.mark.envkit(BLUEPRINT) on their module or class")


def xdist_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers run this session's tests (1 without xdist): in a worker, their count;
    in the controller, ``-n`` as xdist resolved it."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return int(workerinput.get("workercount", 1))
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) and count > 1 and getattr(config.option, "dist", "no") != "no" else 1


def _reused(settings: Settings) -> str:
    return (f"run {settings.reuse} (ENVKIT_RUN, from `envkit run`)" if settings.attached
            else f"--envkit-reuse={settings.reuse}")


def check_settings(config: pytest.Config, settings: Settings) -> None:
    """Refuse, at start-up, the ini key ``envkit_reset`` with ``--envkit-shared``, or with a reused run
    under several xdist workers."""
    if not str(config.getini("envkit_reset") or "").strip():
        return
    if settings.shared:
        raise pytest.UsageError(f"envkit_reset (ini) with --envkit-shared: {SHARED_ADVICE}.")
    if settings.reuse and (workers := xdist_workers(config)) > 1:
        raise pytest.UsageError(f"envkit_reset (ini) with {_reused(settings)} and {workers} xdist workers: "
                                f"{REUSE_ADVICE}.")


def _refuse_shared(entry: Entry | None, settings: Settings, nodeid: str, config: pytest.Config) -> None:
    if entry is None or not entry.default:
        return
    if settings.shared:
        report.fail(f"envkit: {nodeid}: envkit_reset of the shared environment: {SHARED_ADVICE}.")
    if settings.reuse and (workers := xdist_workers(config)) > 1:
        report.fail(f"envkit: {nodeid}: envkit_reset of {_reused(settings)} under {workers} xdist workers: "
                    f"{REUSE_ADVICE}.")


def services_to_reset(item: pytest.Item) -> tuple[str, ...] | None:
    """None: no reset; () every service with a snapshot; else the services named. The envkit_reset
    marker first, then the envkit marker's ``reset=``, then the ini key."""
    mark = item.get_closest_marker("envkit_reset")
    if mark is not None:
        if not all(isinstance(s, str) for s in mark.args):
            raise pytest.UsageError(f"{item.nodeid}: envkit_reset takes service names, got {mark.args!r}")
        return tuple(mark.args)
    own = item.get_closest_marker("envkit")
    if own is not None and "reset" in own.kwargs:
        return reset_of(own.kwargs["reset"])  # checked when the marker was read
    text = str(item.config.getini("envkit_reset") or "").strip()
    if not text:
        return None
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    return () if names == ("*",) else names


@pytest.fixture(autouse=True)
def envkit_reset_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Resets the services ``services_to_reset`` names once the test is over (only if it used envkit_env)."""
    services = services_to_reset(request.node)
    if services is None:
        yield
        return
    from envkit.environment import Environment
    from envkit.errors import EnvkitError

    # Asked for by the test or its fixtures' arguments: set up before this fixture's end, still there after
    # the test. Asked for with request.getfixturevalue (the outputs fixture of docs/runners.md): known only
    # once the test has run, and gone by now if its scope was the test's own.
    state = request.config.stash[STATE]
    env = request.getfixturevalue("envkit_env") if "envkit_env" in request.fixturenames else None
    _refuse_shared(state.pool.entry_for(env) if env is not None else None, state.settings, request.node.nodeid,
                   request.config)
    yield
    env = env if env is not None else requested_env(request.node)
    if not isinstance(env, Environment):
        return
    entry = state.pool.entry_for(env)
    _refuse_shared(entry, state.settings, request.node.nodeid, request.config)  # getfixturevalue: known only now
    if entry is not None and entry.how == "up" and state.settings.keep and request.node.stash.get(FAILED, False):
        entry.owe(services)  # policy.py keeps the run: a failed test's is (--envkit-keep)
        state.problems.append(f"not reset after failed test {request.node.nodeid}: run {env.run_id} is kept "
                              "(--envkit-keep); a later test using it gets it reset first")
        return
    try:
        env.reset(*services)
    except EnvkitError as exc:
        # Without snapshots nothing can be reset: say how this session turns them on (the core says `envkit up`'s)
        how = "; under pytest: --envkit-snapshot (ini: envkit_snapshot = true)" if not state.settings.snapshot else ""
        report.fail(f"envkit: reset after {request.node.nodeid} failed: {exc}{how}")
