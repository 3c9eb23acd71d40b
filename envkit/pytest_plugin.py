"""pytest plugin: the ``envkit_env`` fixture, the ``envkit`` marker and the ``--envkit-*`` options.

    pytest --envkit-blueprint blueprints/shop          # one environment for the whole session
    pytest --envkit-scope module                       # ... or one per module / class / test

    def test_orders(envkit_env):                       # an envkit.Environment
        urllib.request.urlopen(envkit_env.outputs["API_URL"] + "/health")

    @pytest.mark.envkit("blueprints/hello", scope="function")
    def test_hello(envkit_env): ...                    # this test: its own blueprint and environment

Lifetimes. ``envkit_env`` has the scope chosen by ``--envkit-scope`` / ini ``envkit_scope`` (a dynamic
fixture scope), so fixtures of that scope can build on it. A marker gives a module, class or test its own
environment: the plugin parametrizes ``envkit_env`` for the marked tests (with a hidden id, so test ids do
not change), and pytest sets the fixture, and every fixture built on it, up again when a test asks for a
different environment than the one cached. The environments themselves live in a pool keyed by blueprint
and owning node, and are removed when that node is finished, so going from a marked module back to the
unmarked ones does not bring the session's environment up a second time.

pytest-xdist. Each worker is a process of its own and gets environments of its own. With
``--envkit-shared`` the session's environment is one for all workers: the first worker to need it brings
it up under a file lock, the others attach; a JSON state file in ``<tmp>/envkit-shared-<testrunuid>``
holds the run id and which workers have finished; the last worker to finish removes it (and the
controller removes whatever a crashed worker left).

Failures. A failing test gets an "envkit logs" report section: its environment's service logs for the
test's time window. ``_on_test_failure`` is where the forensics bundle (not built yet) will plug in.

Importing this module is cheap and does nothing; envkit's core (and docker) is imported the first time a
test asks for ``envkit_env``. Ctrl-C, and SIGTERM while an environment is up, remove what the session made.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

if TYPE_CHECKING:
    from _pytest.nodes import Node  # for annotations only

    from envkit.api import Environment
    from envkit.events import Event

__all__ = ["envkit_env"]

Scope = Literal["session", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = ("session", "module", "class", "function")
MARKER_SCOPES: tuple[Scope, ...] = ("module", "class", "function")
LOG_SECTION = "envkit logs"
LOG_GRACE = 0.5  # seconds after a test for its services' last lines to reach the engine's log
LOG_LINES = 400  # the newest lines kept in one report section


_STARTED = pytest.StashKey[float]()


# -- options ----------------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("envkit", "envkit environments")
    group.addoption("--envkit-blueprint", metavar="PATH",
                    help="Blueprint behind the envkit_env fixture (ini: envkit_blueprint).")
    group.addoption("--envkit-scope", choices=SCOPES,
                    help="One environment per session (default), module, class or function (ini: envkit_scope).")
    group.addoption("--envkit-keep", action="store_true",
                    help="Keep an environment a failing test used, and print how to remove it.")
    group.addoption("--envkit-reuse", metavar="RUN",
                    help="Use the running environment RUN instead of bringing one up; never removed.")
    group.addoption("--envkit-shared", action="store_true",
                    help="With pytest-xdist: one environment for all workers instead of one per worker.")
    parser.addini("envkit_blueprint", "Blueprint behind envkit_env, relative to this file.", default="")
    parser.addini("envkit_scope", "session (default) | module | class | function", default="session")


@dataclass(frozen=True)
class Settings:
    blueprint: Path | None
    scope: Scope
    keep: bool
    reuse: str | None
    shared: bool


def _settings(config: pytest.Config) -> Settings:
    scope = config.getoption("envkit_scope") or config.getini("envkit_scope") or "session"
    if scope not in SCOPES:
        raise pytest.UsageError(f"envkit_scope = {scope!r}: use one of {', '.join(SCOPES)}")
    blueprint: Path | None = None
    if config.getoption("envkit_blueprint"):
        blueprint = Path(os.path.normpath(config.invocation_params.dir / config.getoption("envkit_blueprint")))
    elif config.getini("envkit_blueprint"):
        base = config.inipath.parent if config.inipath else config.rootpath
        blueprint = Path(os.path.normpath(base / config.getini("envkit_blueprint")))
    shared = bool(config.getoption("envkit_shared"))
    if shared and scope != "session":
        raise pytest.UsageError(f"--envkit-shared shares the session's environment; it needs scope session, not {scope}")
    return Settings(blueprint, cast(Scope, scope), bool(config.getoption("envkit_keep")),
                    config.getoption("envkit_reuse") or None, shared)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "envkit(blueprint, scope=None): the module, class or test gets its own environment of BLUEPRINT "
        "(relative to the rootdir) for envkit_env; scope module | class | function, default: where the mark is.")
    state = _State(config, _settings(config))
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "envkit-state")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and config.pluginmanager.is_registered(state):
        config.pluginmanager.unregister(state)


def pytest_report_header(config: pytest.Config) -> str | None:
    s = config.stash[_STATE].settings
    if s.reuse:
        return f"envkit: reusing run {s.reuse}"
    if s.blueprint:
        return f"envkit: blueprint {s.blueprint}, one environment per {s.scope}" + (
            " (shared by xdist workers)" if s.shared else "")
    return None


# -- the fixture ------------------------------------------------------------------------------------------
def _scope(fixture_name: str, config: pytest.Config) -> Scope:
    state = config.stash.get(_STATE, None)
    return state.settings.scope if state else "session"


@pytest.fixture(scope=_scope)
def envkit_env(request: pytest.FixtureRequest) -> Iterator[Environment]:
    """The envkit Environment for this test: the blueprint of the closest ``@pytest.mark.envkit``, else of
    --envkit-blueprint / ini envkit_blueprint (or the run named by --envkit-reuse). One per
    --envkit-scope (session by default); removed when that scope ends, unless --envkit-keep and a test
    using it failed."""
    state = request.config.stash[_STATE]
    env, release = state.acquire(request, getattr(request, "param", None))
    yield env
    if release is not None:
        release()


@dataclass(frozen=True, eq=False)
class Want:
    """What a marked test asks for (the param of envkit_env): a blueprint, and who owns its environment."""

    blueprint: Path
    scope: Scope
    owner: str  # node id of the owning module or class; the test's own for scope function

    def __eq__(self, other: object) -> bool:
        # pytest keeps a cached envkit_env while the param compares equal; a test-scoped one never is.
        return (isinstance(other, Want) and self.scope != "function"
                and (self.blueprint, self.scope, self.owner) == (other.blueprint, other.scope, other.owner))

    def __hash__(self) -> int:
        return hash((self.blueprint, self.scope, self.owner))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "envkit_env" not in metafunc.fixturenames:
        return
    found = next(metafunc.definition.iter_markers_with_node("envkit"), None)
    if found is None:
        return
    node, mark = found
    want = _want(metafunc, node, mark)
    metafunc.parametrize("envkit_env", [want], indirect=True, scope=want.scope,
                         ids=[getattr(pytest, "HIDDEN_PARAM", "envkit")])  # HIDDEN_PARAM: pytest >= 8.4


def _want(metafunc: pytest.Metafunc, node: Node, mark: pytest.Mark) -> Want:
    where = f"{metafunc.definition.nodeid}: @pytest.mark.envkit"
    args = list(mark.args) or ([mark.kwargs["blueprint"]] if "blueprint" in mark.kwargs else [])
    unknown = set(mark.kwargs) - {"blueprint", "scope"}
    if len(args) != 1 or not isinstance(args[0], str | os.PathLike) or unknown:
        pytest.fail(f"{where}: expected envkit(blueprint, scope=None)", pytrace=False)
    level: Scope = "module" if isinstance(node, pytest.Module) else "class" if isinstance(node, pytest.Class) else "function"
    scope = mark.kwargs.get("scope") or level
    if scope not in MARKER_SCOPES:
        pytest.fail(f"{where}: scope {scope!r}: use one of {', '.join(MARKER_SCOPES)}", pytrace=False)
    module = metafunc.definition.getparent(pytest.Module)
    klass = metafunc.definition.getparent(pytest.Class)
    owner = {"module": module, "class": klass or module, "function": metafunc.definition}[scope]
    assert owner is not None
    return Want(Path(os.path.normpath(metafunc.config.rootpath / args[0])), cast(Scope, scope), owner.nodeid)


# -- the environments of this process -----------------------------------------------------------------------
@dataclass
class Entry:
    env: Environment
    source: str  # the blueprint path, or "reuse"
    scope: str
    how: str  # up | reuse | shared
    seconds: float = 0.0
    failed: bool = False
    outcome: str = "in use"  # removed | kept | left running | left to the last worker


class _State:
    """Everything the plugin holds for one pytest process (the controller, or one xdist worker); registered
    as a plugin of its own, so its hooks see it."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.pool: dict[tuple[str, ...], Entry] = {}
        self.history: list[Entry] = []  # every environment this process used, for the summary
        self.reported: list[dict[str, Any]] = []  # summaries sent by xdist workers (controller)
        self.shared: _Shared | None = None
        self.shared_uid: str | None = None  # controller: to clean up after a crashed worker
        self.problems: list[str] = []
        self.closed = False
        self._seq = itertools.count(1)
        self._sigterm: Any = None
        workerinput = getattr(config, "workerinput", None)
        if settings.shared and workerinput:
            self.shared = _Shared(workerinput["testrunuid"], int(workerinput["workercount"]),
                                  str(workerinput["workerid"]))

    # -- handing environments out -------------------------------------------------------------------------
    def acquire(self, request: pytest.FixtureRequest, want: Want | None) -> tuple[Environment, Callable[[], None] | None]:
        s = self.settings
        node = request.node
        if want is None:
            holder: Node | None = node  # envkit_env's own scope is the default's
            source = f"reuse:{s.reuse}" if s.reuse else str(s.blueprint or "")
            if not source:
                pytest.fail("envkit_env needs a blueprint: pass --envkit-blueprint PATH, set envkit_blueprint in "
                            "the ini file, mark the test with @pytest.mark.envkit(PATH) or pass --envkit-reuse RUN",
                            pytrace=False)
            scope = s.scope
        else:
            holder = _owner_in_chain(node, want)
            source, scope = str(want.blueprint), want.scope
        key = (source, holder.nodeid) if holder is not None else (source, want.owner if want else "", str(next(self._seq)))
        entry = self.pool.get(key)
        if entry is None:
            entry = self._open(source, scope, want is None)
            self.pool[key] = entry
            self.history.append(entry)
            if holder is not None:
                holder.addfinalizer(lambda: self.release(key))
        # Without a holder pytest ends this fixture exactly when the owning node is done with it.
        return entry.env, (None if holder is not None else lambda: self.release(key))

    def _open(self, source: str, scope: str, default: bool) -> Entry:
        from envkit import api
        from envkit.errors import EnvkitError, Interrupted

        began = time.monotonic()
        try:
            if default and self.settings.reuse:
                entry = Entry(api.attach(self.settings.reuse), "reuse", scope, "reuse")
            elif default and self.shared is not None:
                entry = Entry(self.shared.acquire(lambda: self._up(source)), source, scope, "shared")
            else:
                entry = Entry(self._up(source), source, scope, "up")
        except Interrupted as exc:
            raise KeyboardInterrupt from exc
        except EnvkitError as exc:
            pytest.fail(f"envkit: {source}: {exc}", pytrace=False)
        entry.seconds = time.monotonic() - began
        return entry

    def _up(self, blueprint: str) -> Environment:
        from envkit import api

        self._trap_sigterm()
        return api.up(blueprint, on_event=self._render)

    def release(self, key: tuple[str, ...]) -> None:
        entry = self.pool.pop(key, None)
        if entry is None:
            return
        if entry.how == "reuse":
            entry.outcome = "left running"
        elif entry.how == "shared":
            assert self.shared is not None
            self.shared.failed |= entry.failed
            entry.outcome = "left to the last worker"
        elif self.settings.keep and entry.failed:
            entry.env.detach()  # not removed at interpreter exit either
            entry.outcome = "kept"
        else:
            _down(entry.env)
            entry.outcome = "removed"

    def close(self) -> None:
        """The end of the session, normal or not: remove what is still up (kept ones aside). Once."""
        if self.closed:
            return
        self.closed = True
        for key in list(self.pool):
            try:
                self.release(key)
            except Exception as exc:  # the rest must still go; reported in the summary
                self.problems.append(f"could not remove the environment of {key[0]}: {exc}")
        if self.shared is not None:
            try:
                outcome = self.shared.finish(self.settings.keep)
            except Exception as exc:  # reported in the summary
                self.problems.append(f"shared environment: {exc}")
            else:
                for entry in self.history:
                    if entry.how == "shared":
                        entry.outcome = outcome
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None

    def _trap_sigterm(self) -> None:
        # A cancelled CI job sends SIGTERM: take the Ctrl-C path so the environments are removed.
        if self._sigterm is not None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else handles it

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        self._sigterm = signal.signal(signal.SIGTERM, interrupt)

    # -- hooks ----------------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "setup":
            item.stash[_STARTED] = call.start
        if self.history and report.failed:
            entry = self.entry_of(item)
            if entry is not None:
                entry.failed = True
                _on_test_failure(report, entry, item.stash.get(_STARTED, call.start), call.stop,
                                 self.settings.keep)
        return report

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

    def _sweep_shared(self, uid: str) -> None:
        """Remove what a crashed worker left of the shared environment, and the state folder."""
        folder = _shared_dir(uid)
        try:
            path = folder / "state.json"
            left = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            if left.get("run") and left.get("kept"):
                self.reported.append({"run": left["run"], "source": "shared", "scope": "session", "how": "shared",
                                      "seconds": 0.0, "outcome": "kept"})
            elif left.get("run"):
                _remove_run(left["run"])
        except Exception as exc:  # reported, never fatal
            self.problems.append(f"shared environment cleanup: {exc}")
        finally:
            for name in ("state.json", "state.tmp", "lock"):
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()

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
        runs = self.summary() + self.reported
        kept = sorted({r["run"] for r in runs if r["outcome"] == "kept"})
        lines = [f"kept run {run} after a failure; remove it with: envkit down {run}" for run in kept]
        if self.config.get_verbosity() >= 1:
            lines += [f"run {r['run']}: {r['source']}, {r['scope']} scope, {r['how']} in {r['seconds']:.1f}s, "
                      f"{r['outcome']}" for r in runs]
        lines += self.problems
        if lines:
            terminalreporter.section("envkit")
            for line in lines:
                terminalreporter.write_line(line)

    # -- reporting --------------------------------------------------------------------------------------
    def entry_of(self, item: pytest.Item) -> Entry | None:
        funcargs = getattr(item, "funcargs", None)
        env = funcargs.get("envkit_env") if isinstance(funcargs, dict) else None
        return next((e for e in reversed(self.history) if e.env is env), None) if env is not None else None

    def _render(self, event: Event) -> None:
        if self.config.get_verbosity() < 1:
            return
        shown = event.kind in ("plan", "rollback", "teardown", "note") or (
            event.kind == "step" and event.phase == "done" and event.action in ("ready", "complete"))
        if shown:
            _say(self.config, f"envkit: {event.message}")

    def summary(self) -> list[dict[str, Any]]:
        return [{"run": e.env.run_id, "source": e.source, "scope": e.scope, "how": e.how,
                 "seconds": round(e.seconds, 2), "outcome": e.outcome} for e in self.history]


def _owner_in_chain(node: Node, want: Want) -> Node | None:
    """The node owning ``want``'s environment when it is in the fixture's chain (it outlives the
    fixture then); None when envkit_env's scope is wider and pytest will end the fixture for us."""
    if want.scope == "function":
        return node if isinstance(node, pytest.Item) else None
    return next((n for n in node.listchain() if n.nodeid == want.owner), None)


def _down(env: Environment) -> None:
    try:
        env.down()
    except KeyboardInterrupt:  # a second Ctrl-C must not leave half a run
        env.down()


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:  # an xdist worker: nowhere to write
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(line)


_STATE = pytest.StashKey[_State]()


# -- sharing one environment between xdist workers ---------------------------------------------------------
def _shared_dir(testrunuid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"envkit-shared-{testrunuid}"


@dataclass
class _Shared:
    """One environment for every worker of an xdist run, coordinated through a locked state file:
    ``{"run": id | null, "done": [worker ids], "failed": bool, "kept": bool}``."""

    uid: str
    workers: int
    worker: str
    failed: bool = False
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder = _shared_dir(self.uid)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "state.json"
        with FileLock(self.folder / "lock"):
            state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {
                "run": None, "done": [], "failed": False, "kept": False}
            yield state
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, path)

    def acquire(self, up: Callable[[], Environment]) -> Environment:
        from envkit import api

        with self._locked() as state:  # the others wait here while the first one brings it up
            if state["run"]:
                return api.attach(state["run"])
            env = up()
            env.detach()  # removed by the last worker, not when this one exits
            state["run"] = env.run_id
            return env

    def finish(self, keep: bool) -> str:
        """This worker's session is over; the last one to get here removes the environment (idempotent)."""
        with self._locked() as state:
            state["done"] = sorted({*state["done"], self.worker})
            state["failed"] = state["failed"] or self.failed
            if state["kept"]:
                return "kept"
            if len(state["done"]) < self.workers or not state["run"]:
                return "left to the last worker" if state["run"] else "removed"
            if keep and state["failed"]:
                state["kept"] = True
                return "kept"
            _remove_run(state["run"])
            state["run"] = None
            return f"removed by the last worker ({self.worker})"


def _remove_run(run_id: str) -> None:
    from envkit import api
    from envkit.errors import RunNotFound

    with contextlib.suppress(RunNotFound):
        _down(api.attach(run_id))




def _on_test_failure(report: pytest.TestReport, entry: Entry, since: float, until: float, keep: bool) -> None:
    """What a failing test leaves behind about its environment: today, its services' logs for the test's
    time window (setup start to the end of the failing phase). The forensics bundle (a later issue) is to
    be collected from here."""
    from envkit.errors import EnvkitError

    until += LOG_GRACE
    time.sleep(max(0.0, min(LOG_GRACE, until - time.time())))  # let the last lines reach the engine's log
    try:
        lines = entry.env.logs(since=since, until=until).splitlines()
    except EnvkitError as exc:
        lines = [f"(could not read the logs: {exc})"]
    if len(lines) > LOG_LINES:
        lines = [f"(... {len(lines) - LOG_LINES} earlier lines)", *lines[-LOG_LINES:]]
    clock = "%H:%M:%S"
    head = (f"run {entry.env.run_id}, services' logs from {time.strftime(clock, time.localtime(since))} "
            f"to {time.strftime(clock, time.localtime(until))}")
    if keep and entry.how == "up":
        head += f"; the run is kept: envkit down {entry.env.run_id}"
    report.sections.append((LOG_SECTION, "\n".join([head, *(lines or ["(no log lines in this window)"])])))
