"""The watchdog's protocol and process, without an engine: a fake teardown, a stub backend, real processes.

Closing the owner's end of the pipe is what the kernel does when the owner dies, so the watchdog's view of
``Watchdog._forget()`` is that of a ``kill -9`` (tests/integration/test_reaper.py kills real owners).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from envkit import labels as L
from envkit import reaper
from envkit.backends.base import Resource
from envkit.errors import EngineUnavailable
from envkit.events import Event
from envkit.reaper import ReaperUnavailable, State, Watchdog, end_children, engine_teardown, message, reap

ME = {L.OWNER: "me@host:1", L.CREATED_AT: "2030-01-01T00:00:00Z"}


def state_of(*messages: bytes) -> State:
    state = State()
    for m in messages:
        state.apply(m)
    return state


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Commands to register; each leads a process group of its own. Killed at the end whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def sleeper(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    procs.append(subprocess.Popen(["sleep", "30"], start_new_session=True))
    return procs[-1]


# -- the protocol ------------------------------------------------------------------------------------------
def test_runs_and_commands_are_registered_and_released() -> None:
    state = state_of(message("watch", run="a", labels=ME), message("watch", run="b", labels={}),
                     message("release", run="a"), message("child", pid=42, group=True),
                     message("child", pid=43, group=False), message("unchild", pid=43), message("release", run="zz"))
    assert state.runs == {"b": {}}
    assert state.children == {42: True}


def test_malformed_and_unknown_messages_are_skipped() -> None:
    state = state_of(b"garbage\n", b'{"op": "watch"}\n', b'{"op": "child", "pid": "x"}\n', b"[1, 2]\n", b'"op"\n',
                     b'{"op": "future", "run": "a"}\n', b'{"op": "watch", "run": "a", "labels": 3}\n',
                     message("watch", run="ok", labels=ME))
    assert state.runs == {"ok": ME}
    assert state.children == {}


def test_a_message_is_one_line_short_enough_to_be_written_atomically() -> None:
    msg = message("watch", run="r" * 63, labels={**ME, L.OWNER: "u" * 200 + "@host:4194304"})
    assert msg.endswith(b"\n") and msg.count(b"\n") == 1
    assert len(msg) < select.PIPE_BUF


def test_replay_rebuilds_the_same_state() -> None:
    state = state_of(message("watch", run="a", labels=ME), message("child", pid=7, group=True))
    assert state_of(*state.replay().splitlines(keepends=True)) == state


def test_messages_are_read_until_the_owner_end_closes() -> None:
    read, write = os.pipe()
    os.write(write, message("watch", run="a", labels=ME) + message("child", pid=9, group=False))
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        state = reaper.read_until_eof(pipe)
    assert state.runs == {"a": ME} and state.children == {9: False}


# -- what happens at end-of-file ---------------------------------------------------------------------------
def test_reap_tears_down_what_is_watched_with_its_owner_labels_and_ends_the_commands() -> None:
    torn: list[dict[str, Mapping[str, str]]] = []
    signals: list[tuple[int, bool, int]] = []

    def kill(pid: int, group: bool, sig: int) -> bool:
        signals.append((pid, group, sig))
        return not (pid == 2 and sig == 0)  # 1 ignores SIGTERM, 2 ends at once

    state = state_of(message("watch", run="a", labels=ME), message("child", pid=1, group=True),
                     message("child", pid=2, group=False))
    reap(state, lambda runs: torn.append(dict(runs)), kill, grace=0.2)
    assert torn == [{"a": ME}]
    assert (1, True, signal.SIGTERM) in signals and (2, False, signal.SIGTERM) in signals
    assert (1, True, signal.SIGKILL) in signals
    assert (2, False, signal.SIGKILL) not in signals


def test_nothing_watched_means_no_engine_call() -> None:
    def teardown(runs: Mapping[str, Mapping[str, str]]) -> None:
        raise AssertionError("no run was watched")

    reap(state_of(message("watch", run="a", labels=ME), message("release", run="a")), teardown)


def test_commands_end_with_what_they_started_even_when_they_ignore_sigterm(
        sleepers: list[subprocess.Popen[bytes]]) -> None:
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait"], stdout=subprocess.PIPE,
                                start_new_session=True)
    sleepers.append(stubborn)
    assert stubborn.stdout is not None
    background = int(stubborn.stdout.readline())
    stubborn.stdout.close()
    polite = sleeper(sleepers)
    began = time.monotonic()
    end_children({stubborn.pid: True, polite.pid: False}, grace=0.5)
    assert polite.wait(timeout=5) == -signal.SIGTERM
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert gone_within(background, 5)
    assert time.monotonic() - began < 3


class Stub:
    """Just what runs.teardown uses of a backend."""

    def __init__(self, *resources: Resource) -> None:
        self.resources = list(resources)
        self.closed = False

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        return [r for r in self.resources
                if all(k in r.labels if v is None else r.labels.get(k) == v for k, v in labels.items())]

    def _remove(self, ident: str) -> None:
        self.resources = [r for r in self.resources if r.id != ident]

    def remove_container(self, container_id: str, grace: float) -> None:
        self._remove(container_id)

    def remove_network(self, network_id: str) -> None:
        self._remove(network_id)

    def remove_volume(self, name: str) -> None:
        self._remove(name)

    def close(self) -> None:
        self.closed = True


def resource(kind: str, ident: str, owner: Mapping[str, str]) -> Resource:
    return Resource(kind, ident, ident, {L.MANAGED: "true", L.RUN: "r", **owner})  # type: ignore[arg-type]


def test_engine_teardown_spares_a_same_named_run_of_another_owner_and_sweeps_again() -> None:
    theirs = resource("container", "theirs", {L.OWNER: "you@host:2", L.CREATED_AT: ME[L.CREATED_AT]})
    stub = Stub(resource("container", "c1", ME), resource("network", "n1", ME), resource("volume", "v1", ME), theirs)
    attempts: list[int] = []

    def connect() -> Stub:
        attempts.append(1)
        if len(attempts) == 1:
            raise EngineUnavailable("restarting")
        return stub

    def sweeps() -> Iterator[float]:
        yield 0  # the engine does not answer yet
        yield 0
        stub.resources.append(resource("container", "late", ME))  # its creation was in flight at the death
        yield 0

    engine_teardown({"r": ME}, connect, sweeps())
    assert stub.resources == [theirs]
    assert stub.closed and len(attempts) == 2


# -- the process --------------------------------------------------------------------------------------------
def pipe_inode(fd: int) -> str:
    return f"pipe:[{os.fstat(fd).st_ino}]"


def test_the_watchdog_is_detached_and_ends_the_commands_when_the_owner_end_closes(
        sleepers: list[subprocess.Popen[bytes]]) -> None:
    watchdog, first = Watchdog(), sleeper(sleepers)
    watchdog.child(first.pid, group=True)  # starts it
    pid = watchdog.pid
    assert pid is not None and alive(pid)
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert int(status["PPid"]) != os.getpid()  # not this process's child: never a zombie of the owner
    assert os.getsid(pid) != os.getsid(0)  # no terminal's Ctrl-C or hang-up reaches it
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    assert watchdog._fd is not None
    second = sleeper(sleepers)  # started after the pipe exists: must not hold the owner's end
    assert pipe_inode(watchdog._fd) not in {os.readlink(f"/proc/{second.pid}/fd/{n}")
                                            for n in os.listdir(f"/proc/{second.pid}/fd")}
    watchdog.child(second.pid, group=True)
    watchdog._forget()  # what the kernel does when the owner dies
    assert first.wait(timeout=5) == -signal.SIGTERM
    assert second.wait(timeout=5) == -signal.SIGTERM
    assert gone_within(pid, 5)


def test_a_released_command_is_left_alone(sleepers: list[subprocess.Popen[bytes]]) -> None:
    watchdog, first, second = Watchdog(), sleeper(sleepers), sleeper(sleepers)
    watchdog.child(first.pid, group=True)
    watchdog.child(second.pid, group=False)
    watchdog.unchild(second.pid)
    pid = watchdog.pid
    assert pid is not None
    watchdog._forget()
    assert first.wait(timeout=5) == -signal.SIGTERM
    assert gone_within(pid, 5)
    assert second.poll() is None


def test_a_killed_watchdog_is_replaced_with_everything_registered(sleepers: list[subprocess.Popen[bytes]]) -> None:
    watchdog, first = Watchdog(), sleeper(sleepers)
    watchdog.child(first.pid, group=True)
    killed = watchdog.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    assert gone_within(killed, 5)
    second = sleeper(sleepers)
    watchdog.child(second.pid, group=True)
    assert watchdog.pid not in (None, killed)
    watchdog._forget()
    assert first.wait(timeout=5) == -signal.SIGTERM
    assert second.wait(timeout=5) == -signal.SIGTERM


def test_a_forked_child_lets_go_of_the_pipe(sleepers: list[subprocess.Popen[bytes]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    watchdog, first = Watchdog(), sleeper(sleepers)
    watchdog.child(first.pid, group=True)
    monkeypatch.setattr(reaper, "_watchdog", watchdog)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os._exit(0 if reaper._watchdog is None and watchdog._fd is None else 1)
    assert os.waitpid(child, 0)[1] == 0
    time.sleep(0.3)
    assert first.poll() is None  # the child's exit is not the owner's
    watchdog._forget()
    assert first.wait(timeout=5) == -signal.SIGTERM


def test_a_prepared_watchdog_is_the_one_the_first_registration_uses(sleepers: list[subprocess.Popen[bytes]]) -> None:
    watchdog, first = Watchdog(), sleeper(sleepers)
    watchdog.prepare()
    assert watchdog._pending is not None and watchdog.pid is None
    prepared = watchdog._pending[0]
    watchdog.prepare()  # once is enough
    assert watchdog._pending[0] is prepared
    watchdog.child(first.pid, group=True)
    pid = watchdog.pid
    assert pid is not None and alive(pid) and watchdog._pending is None
    assert prepared.returncode == 0  # its first process, which forked the watchdog, was waited for
    watchdog._forget()
    assert first.wait(timeout=5) == -signal.SIGTERM
    assert gone_within(pid, 5)


def test_a_prepared_watchdog_with_nothing_registered_ends_with_its_owner_end() -> None:
    watchdog = Watchdog()
    watchdog.prepare()
    assert watchdog._pending is not None
    proc, write = watchdog._pending
    assert proc.stdout is not None
    pid, _ = reaper._read_answer(proc.stdout, 10)
    proc.stdout.close()
    proc.wait(timeout=10)
    assert pid is not None and alive(pid)
    os.close(write)  # what the kernel does when the owner dies
    assert gone_within(pid, 5)


def test_a_watchdog_that_cannot_be_prepared_is_reported_by_the_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    watchdog = Watchdog()
    watchdog.prepare()  # says nothing: the first watch does
    assert watchdog._pending is None
    with pytest.raises(ReaperUnavailable, match="cannot run /nonexistent/python: No such file or directory"):
        watchdog.watch("r", ME)


# -- saying so when there is none ------------------------------------------------------------------------------
@pytest.mark.parametrize(("executable", "reason"), [
    ("/nonexistent/python", "cannot run /nonexistent/python: No such file or directory"),
    ("/bin/false", "the watchdog did not start: it exited with status 1"),
    ("/bin/sh", "the watchdog did not start: .*sh: .*"),  # `sh -P -m envkit.reaper`: its own complaint
])
def test_a_watchdog_that_cannot_start_is_an_error_that_says_what_to_do(
        executable: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", executable)
    watchdog = Watchdog()
    with pytest.raises(ReaperUnavailable, match=f"{reason}.*a killed process leaves its runs behind. "
                                                "Set ENVKIT_REAPER=0 to run without one"):
        watchdog.watch("r", ME)
    assert watchdog.pid is None and watchdog._state.runs == {}


def test_what_an_interpreter_writes_before_ready_does_not_hide_the_answer() -> None:
    read, write = os.pipe()
    os.write(write, b"Could not find platform dependent libraries <exec_prefix>\nready 4242\n")
    with os.fdopen(read, "rb") as stream:
        assert reaper._read_answer(stream, 5)[0] == 4242
    os.close(write)


def test_switched_off_it_starts_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_REAPER", "0")
    monkeypatch.setattr(reaper, "_watchdog", None)
    events: list[Event] = []
    reaper.watch("r", ME, events.append)
    assert [(e.kind, e.message) for e in events] == [
        ("note", "no watchdog (ENVKIT_REAPER=0): if this process is killed, run r stays until `envkit down r`")]
    assert reaper._watchdog is None
    reaper.release("r")
    reaper.child(1, True)  # no watchdog: nothing to tell, and nothing is started
    assert reaper._watchdog is None


# -- process groups for `envkit run`'s command ------------------------------------------------------------------
def own_group_in(*, terminal: bool) -> str:
    code = ["-c", "from envkit.reaper import own_group; print(own_group())"]
    if not terminal:
        return subprocess.run([sys.executable, *code], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=True).stdout.strip()
    pid, fd = pty.fork()  # the child leads a new session whose controlling terminal is the pty
    if pid == 0:  # pragma: no cover - runs in the forked child
        os.execv(sys.executable, [sys.executable, *code])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    os.waitpid(pid, 0)
    return out.decode().strip()


def test_a_command_gets_its_own_group_unless_envkit_is_a_terminal_foreground_job() -> None:
    assert own_group_in(terminal=False) == "True"
    assert own_group_in(terminal=True) == "False"


def test_engine_teardown_keeps_trying_a_run_while_the_engine_is_away() -> None:
    # A lost engine connection: every pass fails until the engine answers again, within the watchdog's budget.
    stub = Stub(resource("container", "c1", ME), resource("network", "n1", ME))
    away = {"passes": 5}
    listing = stub.list_resources

    def flaky(labels: Mapping[str, str | None]) -> list[Resource]:
        if away["passes"] > 0:
            away["passes"] -= 1
            raise EngineUnavailable("cannot reach the Docker engine at tcp://127.0.0.1:1")
        return listing(labels)

    stub.list_resources = flaky  # type: ignore[method-assign]
    began = time.monotonic()
    engine_teardown({"r": ME}, lambda: stub, (0, 0), retry_for=5.0, pause=0.05)
    assert stub.resources == [] and stub.closed
    assert time.monotonic() - began < 2


def test_engine_teardown_gives_up_after_its_time() -> None:
    began = time.monotonic()

    def never() -> Stub:
        raise EngineUnavailable("cannot reach the Docker engine")

    engine_teardown({"r": ME}, never, (0,), retry_for=0.5, pause=0.1)
    assert 0.3 < time.monotonic() - began < 2
