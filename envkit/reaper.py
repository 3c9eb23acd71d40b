"""The watchdog: when the process that owns runs dies, by any means (``kill -9`` too), its runs go.

    owner ──── pipe: only the owner holds the write end ────▶ python -m envkit.reaper
          watch RUN · release RUN · child PID · unchild PID      (own session, cwd /, init's child)

The owner starts the watchdog before it creates its first resource and tells it, one JSON line per
message, which runs to remove should it go away (``watch``: the run id and the labels that make the run
this owner's, so that a same-named run of another process is never touched), which runs no longer
(``release``: removed, or handed over as ``envkit up`` and ``Environment.detach()`` do), and which
commands to end (``child``: a pid, or a process group it leads). The kernel closes the owner's
descriptors however the owner ends, so end-of-file on the pipe is the one signal: the watchdog then
sends SIGTERM to every registered command (SIGKILL after ``GRACE``), tears every run still watched down
by labels, and exits. An owner that exits cleanly has released everything, so its watchdog finds
nothing to do and exits at once; whatever an owner leaves registered is removed, however it exited.

What the watchdog cannot cover (docs/lifecycle.md): being killed together with its owner (a whole
cgroup, container or machine), and an engine it cannot reach for ``RETRY_FOR`` seconds after the owner
is gone (then ``envkit gc`` removes the run once the engine is back: its claim says its `up` never ended).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from envkit.errors import EnvkitError
from envkit.events import Event, EventSink, ignore

__all__ = [
    "ReaperUnavailable",
    "State",
    "Watchdog",
    "child",
    "engine_teardown",
    "for_process",
    "own_group",
    "prepare",
    "reap",
    "release",
    "unchild",
    "watch",
]

GRACE = 3.0  # seconds a registered command gets between SIGTERM and SIGKILL
BUDGET = 60  # the watchdog ends itself this long after its owner, whatever the engine does
SWEEPS = (0.0, 1.0, 2.0)  # pauses before each teardown pass: the first, then what was in flight at death
RETRY_FOR = 50.0  # seconds: a run the engine could not be reached for is tried again until then (< BUDGET)
RETRY_PAUSE = 2.0  # seconds between those tries
READY_TIMEOUT = 10.0  # a slow CI machine may take this long to start an interpreter
SWITCH = "ENVKIT_REAPER"  # "0" (or off/false/no): run without a watchdog, with a note saying so

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # the watchdog runs this very envkit


class ReaperUnavailable(EnvkitError):
    """The watchdog could not be started: a killed process would leave its runs behind."""


# -- the protocol -----------------------------------------------------------------------------------------
def message(op: str, **fields: object) -> bytes:
    """One message: a JSON object on one line, well under PIPE_BUF, so each write is atomic."""
    return json.dumps({"op": op, **fields}, separators=(",", ":")).encode() + b"\n"


@dataclass
class State:
    """What an owner has registered: runs to remove (with the labels that make them its own) and
    commands to end (pid → whether it leads its own process group)."""

    runs: dict[str, dict[str, str]] = field(default_factory=dict)
    children: dict[int, bool] = field(default_factory=dict)

    def apply(self, line: bytes | str) -> None:
        """Take one message. A malformed or unknown one is skipped: a newer owner may say more."""
        try:
            msg = json.loads(line)
            op = msg["op"]
            if op == "watch":
                self.runs[str(msg["run"])] = {str(k): str(v) for k, v in dict(msg.get("labels", {})).items()}
            elif op == "release":
                self.runs.pop(str(msg["run"]), None)
            elif op == "child":
                self.children[int(msg["pid"])] = bool(msg.get("group", False))
            elif op == "unchild":
                self.children.pop(int(msg["pid"]), None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return

    def replay(self) -> bytes:
        """Everything registered, as messages (for a watchdog started in place of a lost one)."""
        return b"".join([*(message("watch", run=r, labels=lb) for r, lb in self.runs.items()),
                         *(message("child", pid=p, group=g) for p, g in self.children.items())])


def read_until_eof(lines: Iterable[bytes]) -> State:
    """Apply messages until the owner's end of the pipe is closed."""
    state = State()
    for line in lines:
        state.apply(line)
    return state


# -- what the watchdog does at end-of-file -------------------------------------------------------------------
Kill = Callable[[int, bool, int], bool]  # (pid, whole group, signal) -> whether anything received it
Teardown = Callable[[Mapping[str, Mapping[str, str]]], None]


def _kill(pid: int, group: bool, sig: int) -> bool:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):  # gone (or the pid is another user's by now)
        return False
    return True


def end_children(children: Mapping[int, bool], kill: Kill = _kill, grace: float = GRACE) -> None:
    """SIGTERM (and SIGCONT, for a stopped one) to each; SIGKILL to what is still there after ``grace``."""
    alive = {pid: group for pid, group in children.items() if kill(pid, group, signal.SIGTERM)}
    for pid, group in alive.items():
        kill(pid, group, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid: group for pid, group in alive.items() if kill(pid, group, 0)}
    for pid, group in alive.items():
        kill(pid, group, signal.SIGKILL)


def reap(state: State, teardown: Teardown, kill: Kill = _kill, grace: float = GRACE) -> None:
    """End the commands and remove the runs, side by side (a command's grace does not delay teardown)."""
    ender = threading.Thread(target=end_children, args=(dict(state.children), kill, grace), daemon=True)
    ender.start()
    if state.runs:
        teardown(state.runs)
    ender.join()


def _connect() -> Any:
    from envkit.backends import connect

    return connect()


def engine_teardown(runs: Mapping[str, Mapping[str, str]], connect: Callable[[], Any] = _connect,
                    sweeps: Iterable[float] = SWEEPS, retry_for: float = RETRY_FOR, pause: float = RETRY_PAUSE) -> None:
    """Remove the runs from the engine this process's environment names (the owner's, given at start).
    Later sweeps catch what the engine was still creating when the owner died. A run that could not be
    removed (the engine away: a lost connection, a restarting daemon) is tried again every ``pause``
    seconds until ``retry_for`` seconds after the start."""
    from envkit.runs import teardown

    backend: Any = None
    began = time.monotonic()
    failed: set[str] = set(runs)

    def one(item: tuple[str, Mapping[str, str]]) -> bool:
        # Whatever goes wrong with one run (a network still detaching, or worse), the other runs and the
        # next sweep go on: there is no one left to report to.
        try:
            teardown(backend, [item[0]], missing_ok=True, also=item[1])
        except Exception:
            return False
        return True

    def sweep(which: Mapping[str, Mapping[str, str]]) -> None:
        nonlocal backend
        try:
            backend = backend or connect()
        except EnvkitError:
            return  # the engine may be restarting; the next sweep tries again
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(which)))) as pool:
            for run_id, removed in zip(which, pool.map(one, which.items()), strict=True):
                (failed.discard if removed else failed.add)(run_id)

    try:
        for wait in sweeps:
            time.sleep(wait)
            sweep(runs)
        while failed and time.monotonic() - began + pause < retry_for:
            time.sleep(pause)
            sweep({r: runs[r] for r in sorted(failed)})
    finally:
        if backend is not None:
            backend.close()


def main() -> None:
    """The watchdog process (``python -m envkit.reaper``; its stdin is the owner's pipe)."""
    os.chdir("/")  # never keep the owner's working directory busy
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A terminal's Ctrl-C or hang-up, or a TERM sent to the whole job, is the owner's to handle: the
        # watchdog stays until the pipe closes and then removes whatever the owner did not.
        signal.signal(sig, signal.SIG_IGN)
    if os.fork():
        os._exit(0)  # the owner reaps this first process at once; the watchdog is init's child from now on
    # Quiet from here on: stderr first, then stdout once it has carried the answer, so that from the
    # answer on the watchdog holds only its three standard descriptors (none the owner's but the pipe).
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 2)
    os.close(quiet)
    with contextlib.suppress(OSError):  # an owner gone already: end-of-file follows, with nothing to do
        os.write(1, f"ready {os.getpid()}\n".encode())
    os.dup2(2, 1)
    with os.fdopen(0, "rb") as pipe:
        state = read_until_eof(pipe)
    signal.alarm(BUDGET)  # SIGALRM's default action ends the process: bounded, whatever the engine does
    reap(state, engine_teardown)


# -- the owner's end ------------------------------------------------------------------------------------------
_READY = re.compile(rb"^ready (\d+)$", re.MULTILINE)


def _read_answer(stream: IO[bytes], timeout: float) -> tuple[int | None, str]:
    """The watchdog's pid once it says "ready PID" (an interpreter may warn on stderr first), or None
    and everything it wrote before it gave up (a traceback, a complaint)."""
    fd, data = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while not _READY.search(data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    found = _READY.search(data)
    return (int(found.group(1)) if found else None), data.decode("utf-8", "replace").strip()


class Watchdog:
    """This process's watchdog, started on the first ``watch`` and started again, with everything
    registered so far, if it is found gone. Thread-safe."""

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self._environment = dict(os.environ if environment is None else environment)
        self._lock = threading.Lock()
        self._state = State()
        self._fd: int | None = None
        self.pid: int | None = None  # the watchdog's process, once started
        # started by ``prepare`` and not yet asked for its answer: (process, write end of its pipe)
        self._pending: tuple[subprocess.Popen[bytes], int] | None = None

    def prepare(self) -> None:
        """Start the watchdog's interpreter now, without waiting for its answer: the first ``watch`` then
        finds it ready instead of paying for an interpreter's start (~70 ms) on the way to the first
        resource. Nothing is registered yet, so if this process ends first, the watchdog has nothing to do.
        Problems are left for ``watch`` to report."""
        with self._lock:
            if self._fd is not None or self._pending is not None:
                return
            with contextlib.suppress(OSError):
                self._pending = self._spawn()

    def watch(self, run_id: str, labels: Mapping[str, str]) -> None:
        """Remove ``run_id`` (only resources that also carry ``labels``) if this process dies."""
        try:
            self._send(message("watch", run=run_id, labels=dict(labels)), start=True)
        except ReaperUnavailable:
            self._state.runs.pop(run_id, None)  # up() stops here: nothing of the run will exist
            raise

    def release(self, run_id: str) -> None:
        self._send(message("release", run=run_id))

    def child(self, pid: int, group: bool) -> None:
        """End process ``pid`` (its whole group when ``group``) if this process dies."""
        self._send(message("child", pid=pid, group=group), start=True)

    def unchild(self, pid: int) -> None:
        self._send(message("unchild", pid=pid))

    def _send(self, msg: bytes, start: bool = False) -> None:
        with self._lock:
            self._state.apply(msg)
            if self._fd is None:
                if start:
                    self._start()
                return
            try:
                os.write(self._fd, msg)
            except OSError:  # the watchdog was killed: a new one takes over everything registered
                self._forget()
                self._start()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        """The watchdog's interpreter, started, and the write end of its pipe (OSError: it cannot be run)."""
        read, write = os.pipe()  # both not inheritable: no other child of this process holds the write end
        env = {**self._environment,
               "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_ROOT, self._environment.get("PYTHONPATH")) if p)}
        try:
            proc = subprocess.Popen([sys.executable, "-P", "-m", "envkit.reaper"], stdin=read,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/", env=env,
                                    start_new_session=True, close_fds=True)
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        return proc, write

    def _start(self) -> None:
        pending, self._pending = self._pending, None
        try:
            proc, write = pending if pending is not None else self._spawn()
        except OSError as exc:
            what = f"cannot run {sys.executable}" if exc.filename else "the watchdog exited at once"
            raise ReaperUnavailable(_unavailable(f"{what}: {exc.strerror}")) from exc
        try:
            assert proc.stdout is not None
            with proc.stdout:
                pid, answer = _read_answer(proc.stdout, READY_TIMEOUT)
            try:
                proc.wait(timeout=READY_TIMEOUT)  # the first process exits right after its fork
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if pid is None:
                if answer:
                    reason = answer.splitlines()[-1]  # e.g. the last line of a traceback
                elif proc.returncode:
                    reason = f"it exited with status {proc.returncode}"
                else:
                    reason = f"no answer within {READY_TIMEOUT:g} s"
                raise ReaperUnavailable(_unavailable(f"the watchdog did not start: {reason}"))
            os.write(write, self._state.replay())
        except OSError as exc:
            os.close(write)
            what = f"cannot run {sys.executable}" if exc.filename else "the watchdog exited at once"
            raise ReaperUnavailable(_unavailable(f"{what}: {exc.strerror}")) from exc
        except BaseException:  # ReaperUnavailable, or Ctrl-C while it was starting: nothing is watched
            os.close(write)
            raise
        self._fd, self.pid = write, pid

    def _forget(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self.pid = None

    def _drop_after_fork(self) -> None:
        """In a forked child: let go of the parent's pipe (its end-of-file must still mean the parent's end)."""
        for fd in (self._fd, self._pending[1] if self._pending is not None else None):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd, self._pending = None, None


def _unavailable(reason: str) -> str:
    return (f"{reason}; without a watchdog a killed process leaves its runs behind. "
            f"Set {SWITCH}=0 to run without one")


# -- this process's watchdog ------------------------------------------------------------------------------------
_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def for_process(environment: Mapping[str, str] | None = None) -> Watchdog:
    """The watchdog of this process (created on first use, with ``environment`` or the process's own as
    it is then: what it connects to the engine with)."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = Watchdog(environment)
        return _watchdog


def _after_fork_in_child() -> None:
    global _watchdog, _watchdog_lock
    if _watchdog is not None:
        _watchdog._drop_after_fork()
    _watchdog, _watchdog_lock = None, threading.Lock()  # the forked child gets its own, if it needs one


os.register_at_fork(after_in_child=_after_fork_in_child)


def disabled() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def watch(run_id: str, labels: Mapping[str, str], on_event: EventSink = ignore,
          environment: Mapping[str, str] | None = None) -> None:
    """Have this process's watchdog remove ``run_id`` if the process dies; call it before the run's
    first resource exists. ``environment`` names the engine (DOCKER_HOST, ENVKIT_ENGINE) for a watchdog
    started now; one watchdog serves the whole process. Raises ReaperUnavailable when none can start."""
    if disabled():
        on_event(Event("note", run_id, f"no watchdog ({SWITCH}=0): if this process is killed, run {run_id} "
                                       f"stays until `envkit down {run_id}`"))
        return
    for_process(environment).watch(run_id, labels)


def prepare(environment: Mapping[str, str] | None = None) -> None:
    """Start this process's watchdog ahead of its first ``watch`` (``environment`` as there), so that its
    interpreter starts while the caller still loads and plans; no-op when disabled or already started."""
    if not disabled():
        for_process(environment).prepare()


def release(run_id: str) -> None:
    """The run is gone or handed over: the watchdog no longer removes it."""
    if _watchdog is not None:
        _watchdog.release(run_id)


def child(pid: int, group: bool) -> None:
    """End ``pid`` (its group when ``group``) if this process dies; no-op without a watchdog."""
    if _watchdog is not None and _watchdog.pid is not None:
        _watchdog.child(pid, group)


def unchild(pid: int) -> None:
    if _watchdog is not None:
        _watchdog.unchild(pid)


def own_group() -> bool:
    """Whether a command started now should lead a process group of its own, so that the watchdog can end
    it together with everything it started. Not when this process is the foreground job of a terminal:
    there the command stays in the terminal's foreground group, so that Ctrl-C and Ctrl-Z reach it and it
    can read the terminal (a shell, a debugger); the watchdog then ends the command alone."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return False
        except OSError:
            continue
    return True


if __name__ == "__main__":
    main()
