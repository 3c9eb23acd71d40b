"""SIGHUP (a closed terminal or SSH session) takes the path of SIGTERM and Ctrl-C: the run is removed,
envkit exits with 130, and `run`'s command ends too. Real processes, real engine, a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from envkit import labels as L
from envkit.backends import Backend

from .conftest import ROOT, TEST_BLUEPRINTS, resources_of

ENVKIT = str(Path(sys.executable).with_name("envkit"))
HELLO = str(ROOT / "blueprints" / "hello")
# The command says its pid, then waits; it would keep waiting for 300 s if nobody ended it.
COMMAND = ["sh", "-c", "echo command-pid $$; exec sleep 300"]


def read_until(fd: int, text: str, limit: float = 120) -> str:
    data, began = b"", time.monotonic()
    while text.encode() not in data and time.monotonic() - began < limit:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side of the terminal is gone
                break
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def command_pid(output: str) -> int:
    return int(next(line for line in output.splitlines() if line.startswith("command-pid ")).split()[1])


def gone(pid: int, limit: float = 15) -> bool:
    began = time.monotonic()
    while time.monotonic() - began < limit:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def wait_for_containers(backend: Backend, run_id: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not backend.list_containers({L.RUN: run_id}) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sighup_during_up_removes_what_was_created(backend: Backend) -> None:
    proc = subprocess.Popen([ENVKIT, "up", str(TEST_BLUEPRINTS / "never-ready"), "--name", "it-hup-up"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_containers(backend, "it-hup-up")
    time.sleep(0.3)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; run it-hup-up was removed" in err
    assert resources_of(backend, "it-hup-up") == []


def test_sighup_to_run_ends_its_command_and_tears_down(backend: Backend) -> None:
    proc = subprocess.Popen([ENVKIT, "run", HELLO, "--name", "it-hup-run", "--", *COMMAND], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        out = read_until(proc.stdout.fileno(), "command-pid ")
        out += read_until(proc.stdout.fileno(), "\n", 5)
        pid = command_pid(out)
        proc.send_signal(signal.SIGHUP)  # to envkit alone: it passes the hang-up on to the command
        out += read_until(proc.stdout.fileno(), "removed", 60)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == 130, out
    assert gone(pid), f"the command (pid {pid}) outlived envkit run"
    assert "run it-hup-run removed" in out and "Traceback" not in out
    assert resources_of(backend, "it-hup-run") == []


def test_a_closed_terminal_ends_run_and_its_command_and_leaves_nothing(backend: Backend) -> None:
    pid, fd = pty.fork()  # a session whose controlling terminal is the pty, as in an SSH login
    if pid == 0:  # pragma: no cover - runs in the forked child
        os.chdir(ROOT)
        os.execv(ENVKIT, [ENVKIT, "run", HELLO, "--name", "it-hup-tty", "--", *COMMAND])
    try:
        out = read_until(fd, "command-pid ")
        out += read_until(fd, "\n", 5)
        command = command_pid(out)
    finally:
        os.close(fd)  # the terminal goes away: the kernel hangs up its session (SIGHUP)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130, out
    assert gone(command), f"the command (pid {command}) outlived the terminal"
    assert resources_of(backend, "it-hup-tty") == []
