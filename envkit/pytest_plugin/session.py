"""The plugin's state for one pytest process (the controller, or one xdist worker): it hands environments
out of the pool, releases them by the policy, and holds the hooks that need that state (failure logs,
interrupts, the summary, xdist). Registered as a plugin of its own, so its hooks see it.

The decisions live in the small modules next to this one (pool, policy, shared, report); this class
ties them to pytest's nodes and to the engine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from envkit.pytest_plugin import policy, report
from envkit.pytest_plugin.pool import Entry, Key, Pool, Want, owner_in_chain
from envkit.pytest_plugin.settings import Settings
from envkit.pytest_plugin.shared import SharedRun, shared_dir, sweep
from envkit.signals import despite_interrupts, trap_sigterm

if TYPE_CHECKING:
    from _pytest.nodes import Node

    from envkit.api import Environment
    from envkit.backends.base import Backend
    from envkit.events import Event

__all__ = ["FAILED", "STATE", "PluginState", "requested_env"]

STATE = pytest.StashKey["PluginState"]()  # the config's PluginState
FAILED = pytest.StashKey[bool]()  # on an item: its setup or call failed
_STARTED = pytest.StashKey[float]()


def requested_env(item: pytest.Item) -> object | None:
    """The envkit_env value ``item`` received: as an argument (or through a fixture that takes it), or
    asked for with ``request.getfixturevalue("envkit_env")``, which pytest records only in the test's
    own request (a private attribute, hence the defensive reads)."""
    funcargs = getattr(item, "funcargs", None)
    if isinstance(funcargs, dict) and "envkit_env" in funcargs:
        found: object = funcargs["envkit_env"]
        return found
    fixture_defs = getattr(getattr(item, "_request", None), "_fixture_defs", None)
    fixturedef = fixture_defs.get("envkit_env") if isinstance(fixture_defs, dict) else None
    cached = getattr(fixturedef, "cached_result", None)
    value: object | None = cached[0] if cached is not None else None
    return value


class PluginState:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.pool = Pool()
        self.reported: list[dict[str, Any]] = []  # summaries sent by xdist workers (controller)
        self.problems: list[str] = []
        self.shared: SharedRun | None = None
        self.shared_uid: str | None = None  # controller: to clean up after a crashed worker
        self.backend: Backend | None = None  # the one the environments came from
        self.closed = False
        self._own_backend: Backend | None = None  # made by default_backend(): closed at the end
        self._restore_sigterm: Callable[[], None] | None = None
        workerinput = getattr(config, "workerinput", None)
        if settings.shared and workerinput:
            self.shared = SharedRun(shared_dir(workerinput["testrunuid"]), int(workerinput["workercount"]),
                                    str(workerinput["workerid"]))

    # -- the engine ---------------------------------------------------------------------------------------
    def default_backend(self) -> Backend:
        """The engine chosen by --envkit-engine / ini envkit_engine (else ENVKIT_ENGINE, else docker),
        connected on first use. What the default envkit_backend fixture returns."""
        if self._own_backend is None:
            from envkit.backends import connect

            self._own_backend = connect(engine=self.settings.engine)
        return self._own_backend

    def _close_backend(self) -> None:
        if self._own_backend is not None:
            self._own_backend.close()
            self._own_backend = None

    # -- handing environments out -------------------------------------------------------------------------
    def acquire(self, request: pytest.FixtureRequest,
                want: Want | None) -> tuple[Environment, Callable[[], None] | None]:
        """envkit_env's value for ``request``, and what the fixture must call at its end (None when the
        owning node's finalizer releases it)."""
        node = request.node
        holder: Node | None
        if want is None:
            holder = node  # envkit_env's own scope is the default's
            source, scope = self.settings.default_source, self.settings.scope
            if not source:
                pytest.fail("envkit_env needs a blueprint: pass --envkit-blueprint PATH, set envkit_blueprint in "
                            "the ini file, mark the test with @pytest.mark.envkit(PATH) or pass --envkit-reuse RUN",
                            pytrace=False)
        else:
            holder = owner_in_chain(node, want)
            source, scope = str(want.blueprint), want.scope
        key = self.pool.key(source, holder, want)
        if self.pool.get(key) is None:
            backend: Backend = request.getfixturevalue("envkit_backend")
            self.backend = self.backend or backend
            self.pool.add(key, self._open(source, scope, want is None, backend))
            if holder is not None:
                holder.addfinalizer(lambda: self.release(key))
        entry = self.pool.get(key)
        assert entry is not None
        # Without a holder pytest ends this fixture exactly when the owning node is done with it.
        return entry.env, (None if holder is not None else lambda: self.release(key))

    def _open(self, source: str, scope: str, default: bool, backend: Backend) -> Entry:
        from envkit.errors import EnvkitError, Interrupted

        began = time.monotonic()
        try:
            if default and self.settings.reuse:
                entry = Entry(self._attach(self.settings.reuse, backend), "reuse", scope, "reuse")
            elif default and self.shared is not None:
                env = self.shared.acquire(lambda: self._up(source, backend), lambda run: self._attach(run, backend))
                entry = Entry(env, source, scope, "shared")
            else:
                entry = Entry(self._up(source, backend), source, scope, "up")
        except Interrupted as exc:
            raise KeyboardInterrupt from exc
        except EnvkitError as exc:
            origin = " (ENVKIT_RUN, set by `envkit run`)" if default and self.settings.attached else ""
            where = f"\n(forensics bundle in {self.settings.artifacts})" if self.settings.artifacts else ""
            report.fail(f"envkit: {source}{origin}: {exc}{where}")
        entry.seconds = time.monotonic() - began
        entry.default = default
        return entry

    def _attach(self, run_id: str, backend: Backend) -> Environment:
        """A run another process brought up. With env files given, its blueprint is loaded with them
        here: a reset (and the seeds it runs again) that loaded it again from the run's path would read
        only the .env beside it, not what ${VAR} read at its ``up``."""
        from envkit import api
        from envkit.blueprint import load
        from envkit.errors import EnvkitError

        env = api.attach(run_id, backend=backend)
        path = env.info.blueprint_path
        if self.settings.env_files and path:
            with contextlib.suppress(EnvkitError):  # not loadable now: a reset says why, as without env files
                env.blueprint = load(path, None, self.settings.env_files)
        return env

    def _up(self, blueprint: str, backend: Backend) -> Environment:
        from envkit import api

        if self._restore_sigterm is None:
            # A cancelled CI job sends SIGTERM: take the Ctrl-C path so the environments are removed.
            self._restore_sigterm = trap_sigterm(unless_handled=True)
        # A run that may be kept (--envkit-keep) or outlive this worker (--envkit-shared) is nobody's to gc.
        return api.up(blueprint, on_event=self._render, backend=backend,
                      lifetime="detached" if self.settings.keep or self.shared is not None else "owner",
                      artifacts=self.settings.artifacts, ttl=self.settings.ttl, snapshot=self.settings.snapshot,
                      env_files=self.settings.env_files)

    def release(self, key: Key) -> None:
        entry = self.pool.pop(key)
        if entry is None:
            return
        if entry.how == "shared":
            assert self.shared is not None
            self.shared.failed |= entry.failed
        problem = policy.apply(entry, self.settings.keep)
        if problem:
            self.problems.append(problem)

    def _remove_run(self, run_id: str, backend: Backend) -> None:
        from envkit import api
        from envkit.errors import RunNotFound

        try:
            env = api.attach(run_id, backend=backend)
        except RunNotFound:
            return
        finished, _ = despite_interrupts(env.down)
        if not finished:
            raise RuntimeError(f"run {run_id} may be left (teardown interrupted); remove it with: envkit down {run_id}")

    def close(self) -> None:
        """The end of the session, normal or not: remove what is still up (kept ones aside). Once."""
        if self.closed:
            return
        self.closed = True
        for key in self.pool.live_keys():
            try:
                self.release(key)
            except Exception as exc:  # the rest must still go; reported in the summary
                self.problems.append(f"could not remove the environment of {key[0]}: {exc}")
        if self.shared is not None:
            try:
                outcome = self.shared.finish(self.settings.keep,
                                             lambda run: self._remove_run(run, self.backend or self.default_backend()))
            except Exception as exc:  # reported in the summary
                self.problems.append(f"shared environment: {exc}")
            else:
                for entry in self.pool.history:
                    if entry.how == "shared":
                        entry.outcome = outcome
        if self._restore_sigterm is not None:
            self._restore_sigterm()
            self._restore_sigterm = None

    # -- hooks ----------------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        test_report = yield
        if call.when == "setup":
            item.stash[_STARTED] = call.start
        if test_report.failed and call.when in ("setup", "call"):
            item.stash[FAILED] = True
        if self.pool.history and test_report.failed:
            env = requested_env(item)
            entry = self.pool.entry_for(env) if env is not None else None
            if entry is not None:
                entry.failed = True
                test_report.sections.append(report.failure_section(
                    entry, item.stash.get(_STARTED, call.start), call.stop, self.settings.keep))
                if self.settings.artifacts is not None:  # forensics
                    test_report.sections.append(report.failure_bundle(
                        entry, self.settings.artifacts, item.nodeid, test_report.longreprtext))
        return test_report

    @pytest.hookimpl(tryfirst=True)  # before any fixture of the test
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Pay the resets owed: skipped after a failed test so that a kept run shows what it wrote
        (``reset.py``), and due before the next test while the environment is still in use."""
        from envkit.errors import EnvkitError

        for key in self.pool.live_keys():
            entry = self.pool.get(key)
            if entry is None or entry.owed is None:
                continue
            services, entry.owed = entry.owed, None
            try:
                entry.env.reset(*services)
            except EnvkitError as exc:
                report.fail(f"envkit: the reset skipped after a failed test, due before {item.nodeid}, failed: {exc}")

    def pytest_keyboard_interrupt(self) -> None:
        # pytest ends the fixtures after this as well; removing first leaves a second Ctrl-C less to cut short.
        self.close()

    @pytest.hookimpl(trylast=True)  # after pytest has ended the fixtures
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.close()
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller prints the summary
            workeroutput["envkit"] = {"runs": self.summary(), "problems": self.problems}
        if self.shared_uid:  # the xdist controller: every worker is gone
            self._sweep_shared(self.shared_uid)
        self._close_backend()

    def _sweep_shared(self, uid: str) -> None:
        try:
            kept = sweep(shared_dir(uid), lambda run: self._remove_run(run, self.default_backend()))
        except Exception as exc:  # reported, never fatal
            self.problems.append(f"shared environment cleanup: {exc}")
            return
        if kept:
            self.reported.append({"run": kept, "source": "shared", "scope": "session", "how": "shared",
                                  "seconds": 0.0, "outcome": "kept"})

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # xdist controller, per worker
        if self.settings.shared:
            self.shared_uid = node.workerinput["testrunuid"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:  # xdist controller, per worker
        output = (getattr(node, "workeroutput", None) or {}).get("envkit", {})
        self.reported.extend(output.get("runs", []))
        self.problems.extend(output.get("problems", []))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = report.summary_lines(self.summary() + self.reported, self.problems,
                                     verbose=self.config.get_verbosity() >= 1)
        if lines:
            terminalreporter.section("envkit")
            for line in lines:
                terminalreporter.write_line(line)

    # -- reporting --------------------------------------------------------------------------------------
    def _render(self, event: Event) -> None:
        if self.config.get_verbosity() >= 1 and report.shown(event):
            report.say(self.config, f"envkit: {event.message}")

    def summary(self) -> list[dict[str, Any]]:
        return report.summary_rows(self.pool.history)
