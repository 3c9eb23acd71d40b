"""Nothing outlives its owner: ``kill -9`` of a process owning runs, and the watchdog removes them.

Every process a test starts carries a mark in its environment (ENVKIT_TEST_MARK), which the watchdog and
the commands of ``envkit run`` inherit: "every process of this owner is gone" is then a look at /proc.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends import Backend

from .conftest import ROOT, TEST_BLUEPRINTS, envkit_cli, resources_of

BLUEPRINT = str(TEST_BLUEPRINTS / "reaper")
ENVKIT = str(Path(sys.executable).with_name("envkit"))
LIMIT = 10.0  # seconds from kill -9 to nothing left (issue 12)

# An owner using the Python API: brings the blueprint up, says its run id, then waits to be killed.
OWNER = """
import sys, time, envkit
env = envkit.up(sys.argv[1], name=sys.argv[2])
if sys.argv[3] == "detach":
    env.detach()
print(env.run_id, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's wait is missing


def marked(mark: str) -> dict[int, str]:
    """Live processes whose environment carries the mark: pid -> command line."""
    needle = f"ENVKIT_TEST_MARK={mark}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0") and _alive(int(entry)):
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def seconds_until(done: Callable[[], bool], limit: float) -> float:
    began = time.monotonic()
    while not done():
        if time.monotonic() - began > limit:
            return float("inf")
        time.sleep(0.1)
    return time.monotonic() - began


def kinds(backend: Backend, run_id: str) -> list[str]:
    return sorted(r.split()[0] for r in resources_of(backend, run_id))


EVERYTHING = ["container"] * 2 + ["network"] * 2 + ["volume"]


@contextmanager
def owner(mode: str, name: str, mark: str, tmp: Path) -> Iterator[subprocess.Popen[str]]:
    """The Python-API owner process, killed (and waited for) at the end whatever happened."""
    with open(tmp / f"{name}.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", OWNER, BLUEPRINT, name, mode], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=err, env={**os.environ, "ENVKIT_TEST_MARK": mark})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def ready(proc: subprocess.Popen[str], tmp: Path, name: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == name, (tmp / f"{name}.err").read_text()
    return line


def test_kill_9_of_a_python_owner_removes_its_run_within_10_s(backend: Backend, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    with owner("own", "it-reap-api", mark, tmp_path) as proc:
        ready(proc, tmp_path, "it-reap-api")
        assert kinds(backend, "it-reap-api") == EVERYTHING
        assert any("envkit.reaper" in cmd for cmd in marked(mark).values()), marked(mark)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        took = seconds_until(lambda: not resources_of(backend, "it-reap-api"), LIMIT)
        print(f"kill -9 of the Python owner -> run removed in {took:.2f} s")
    assert took < LIMIT, resources_of(backend, "it-reap-api")
    assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)  # the watchdog is gone too


def test_kill_9_in_the_middle_of_up_removes_what_was_made(backend: Backend, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    with owner("own", "it-reap-mid", mark, tmp_path) as proc:
        assert seconds_until(lambda: bool(backend.list_containers({L.RUN: "it-reap-mid"})), 60) < 60
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        took = seconds_until(lambda: not resources_of(backend, "it-reap-mid"), LIMIT)
        print(f"kill -9 during up -> what was made removed in {took:.2f} s")
    assert took < LIMIT, resources_of(backend, "it-reap-mid")
    assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)
    assert resources_of(backend, "it-reap-mid") == []  # nothing the engine finished creating later


def test_kill_9_of_envkit_run_ends_its_command_and_removes_the_run(backend: Backend, tmp_path: Path) -> None:
    mark, pids = uuid.uuid4().hex, tmp_path / "pids"
    # The command's shell and a process it started in the background: both must end.
    command = 'sleep 300 & echo "$$ $!" > "$PIDS.tmp"; mv "$PIDS.tmp" "$PIDS"; wait'
    with open(tmp_path / "run.err", "w") as err:
        proc = subprocess.Popen([ENVKIT, "run", BLUEPRINT, "--name", "it-reap-run", "--", "sh", "-c", command],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "ENVKIT_TEST_MARK": mark, "PIDS": str(pids)})
    try:
        assert seconds_until(pids.exists, 120) < 120, (tmp_path / "run.err").read_text()
        shell, background = (int(p) for p in pids.read_text().split())
        assert _alive(shell) and _alive(background)
        assert kinds(backend, "it-reap-run") == EVERYTHING
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        began, took, ended = time.monotonic(), float("inf"), float("inf")
        while time.monotonic() - began < LIMIT and float("inf") in (took, ended):
            if took == float("inf") and not resources_of(backend, "it-reap-run"):
                took = time.monotonic() - began
            if ended == float("inf") and not _alive(shell) and not _alive(background):
                ended = time.monotonic() - began
            time.sleep(0.05)
        print(f"kill -9 of envkit run -> run removed in {took:.2f} s, its command ended in {ended:.2f} s")
    finally:
        proc.kill()
        proc.wait()
    assert took < LIMIT, resources_of(backend, "it-reap-run")
    assert ended < LIMIT, marked(mark)
    assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)


def test_kill_9_of_a_pytest_process_removes_its_environment(backend: Backend, tmp_path: Path) -> None:
    mark, said = uuid.uuid4().hex, tmp_path / "run-id"
    (tmp_path / "test_inner.py").write_text(
        "import os, pathlib, time\n"
        "def test_waits(envkit_env):\n"
        "    pathlib.Path(os.environ['SAY_RUN']).write_text(envkit_env.run_id)\n"
        "    time.sleep(300)\n")
    with open(tmp_path / "pytest.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--envkit-blueprint",
                                 BLUEPRINT, "test_inner.py"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "ENVKIT_TEST_MARK": mark, "SAY_RUN": str(said)})
    try:
        assert seconds_until(said.exists, 120) < 120, (tmp_path / "pytest.out").read_text()
        run_id = said.read_text()
        assert kinds(backend, run_id) == EVERYTHING
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        took = seconds_until(lambda: not resources_of(backend, run_id), LIMIT)
        print(f"kill -9 of pytest -> its environment removed in {took:.2f} s")
    finally:
        proc.kill()
        proc.wait()
    assert took < LIMIT, resources_of(backend, run_id)
    assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)


# A command that says which process group it is in (and envkit's), and how it ended on SIGINT.
GROUPS = ("trap 'echo got-INT; exit 7' INT; echo groups $(ps -o pgid= $$) $(ps -o pgid= $PPID); "
          "while :; do sleep 0.1; done")


def read_until(fd: int, text: str, limit: float = 120) -> str:
    data, began = b"", time.monotonic()
    while text.encode() not in data and time.monotonic() - began < limit:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def groups(output: str) -> tuple[int, int]:
    line = next(line for line in output.splitlines() if line.startswith("groups "))
    command, envkit = line.split()[1:3]
    return int(command), int(envkit)


def test_in_a_terminal_the_command_stays_in_the_foreground_group_and_ctrl_c_reaches_it(backend: Backend) -> None:
    pid, fd = pty.fork()  # a session of its own whose controlling terminal is the pty: as in a shell
    if pid == 0:  # pragma: no cover - runs in the forked child
        os.chdir(ROOT)
        os.execv(ENVKIT, [ENVKIT, "run", BLUEPRINT, "--name", "it-reap-tty", "--", "sh", "-c", GROUPS])
    try:
        out = read_until(fd, "groups ")
        out += read_until(fd, "\n", 5)
        command, envkit = groups(out)
        assert command == envkit  # so that Ctrl-C, Ctrl-Z and reading the terminal work as without envkit
        os.write(fd, b"\x03")  # Ctrl-C, typed
        out += read_until(fd, "removed", 60)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert "got-INT" in out
    assert os.waitstatus_to_exitcode(status) == 130, out
    assert resources_of(backend, "it-reap-tty") == []


def test_without_a_terminal_the_command_has_its_own_group_and_gets_sigint_from_envkit(backend: Backend) -> None:
    proc = subprocess.Popen([ENVKIT, "run", BLUEPRINT, "--name", "it-reap-notty", "--", "sh", "-c", GROUPS], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        out = read_until(proc.stdout.fileno(), "groups ")
        out += read_until(proc.stdout.fileno(), "\n", 5)
        command, envkit = groups(out)
        assert command != envkit  # the watchdog can end it with everything it started
        proc.send_signal(signal.SIGINT)  # to envkit alone, as `kill -INT` or a CI runner sends it
        out += read_until(proc.stdout.fileno(), "removed", 60)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert "got-INT" in out
    assert proc.returncode == 130, out
    assert resources_of(backend, "it-reap-notty") == []


def test_runs_handed_over_are_left_alone(backend: Backend, tmp_path: Path) -> None:
    """`envkit up` (a normal exit after a hand-over) and `detach()` followed by kill -9: the watchdogs
    end without touching the runs."""
    mark = uuid.uuid4().hex
    try:
        envkit_cli("up", BLUEPRINT, "--name", "it-reap-up", env={"ENVKIT_TEST_MARK": mark}, check=True)
        with owner("detach", "it-reap-detach", mark, tmp_path) as proc:
            ready(proc, tmp_path, "it-reap-detach")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)
        time.sleep(1)
        for run_id in ("it-reap-up", "it-reap-detach"):
            assert kinds(backend, run_id) == EVERYTHING
            assert all(c.running for c in backend.list_containers({L.RUN: run_id}))
    finally:
        envkit_cli("down", "it-reap-up", "it-reap-detach")
    assert resources_of(backend, "it-reap-up") == resources_of(backend, "it-reap-detach") == []


def test_the_watchdog_never_removes_a_same_named_run_of_another_process(backend: Backend, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    try:
        with owner("own", "it-reap-guard", mark, tmp_path) as proc:
            ready(proc, tmp_path, "it-reap-guard")
            # Someone else removes the run and makes a new one under the same name, while the first
            # owner's watchdog still watches that name.
            envkit_cli("down", "it-reap-guard", check=True)
            envkit_cli("up", BLUEPRINT, "--name", "it-reap-guard", check=True)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert seconds_until(lambda: not marked(mark), 15) < 15, marked(mark)
        assert kinds(backend, "it-reap-guard") == EVERYTHING
    finally:
        envkit_cli("down", "it-reap-guard")
    assert resources_of(backend, "it-reap-guard") == []


def test_without_a_watchdog_up_says_so(backend: Backend) -> None:
    # Cannot start one: up refuses before it creates anything, and says how to go on without.
    script = "import sys, envkit\nsys.executable = '/nonexistent/python'\nenvkit.up(sys.argv[1], name='it-reap-none')\n"
    result = subprocess.run([sys.executable, "-c", script, BLUEPRINT], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "ReaperUnavailable: cannot run /nonexistent/python: No such file or directory" in result.stderr
    assert "Set ENVKIT_REAPER=0 to run without one" in result.stderr
    assert resources_of(backend, "it-reap-none") == []
    # Switched off on purpose: a note on the terminal.
    try:
        up = envkit_cli("up", BLUEPRINT, "--name", "it-reap-off", env={"ENVKIT_REAPER": "0"}, check=True)
        assert "no watchdog (ENVKIT_REAPER=0): if this process is killed, run it-reap-off stays" in up.stderr
    finally:
        envkit_cli("down", "it-reap-off")


@pytest.fixture(autouse=True)
def _nothing_left(backend: Backend) -> Iterator[None]:
    yield
    left = [r for r in resources_of_prefix(backend, "it-reap-")]
    assert not left, left


def resources_of_prefix(backend: Backend, prefix: str) -> list[str]:
    return [f"{r.kind} {r.name}" for r in backend.list_resources({L.MANAGED: "true", L.RUN: None})
            if r.labels.get(L.RUN, "").startswith(prefix)]
