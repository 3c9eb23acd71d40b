"""Compose habits against the real engine, through the installed CLI: `exec` with a pipe and in a
pseudo-terminal, a dead service named by `outputs`/`status`, a busy pinned host port."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit.backends import Backend

from .conftest import ROOT, build_small_image, envkit_cli, resources_of

SMALL = "FROM debian:bookworm-slim\nLABEL io.envkit.test=habits\nCMD [\"sleep\", \"infinity\"]\n"


@pytest.fixture(scope="module")
def db_run(backend: Backend) -> Iterator[str]:
    run = f"it-habits-{os.getpid()}"
    # Without the shop's 100,000 seeded orders (10-20 s): these tests need a database, not its rows.
    envkit_cli("up", "blueprints/shop", "--only", "db", "--no-seed", "--name", run, check=True)
    yield run
    envkit_cli("down", run)
    assert resources_of(backend, run) == []


def test_exec_passes_a_pipe_and_the_exit_code(db_run: str) -> None:
    exe = Path(sys.executable).with_name("envkit")
    result = subprocess.run([str(exe), "exec", db_run, "db", "--", "psql", "-U", "shop", "-At", "shop"],
                            input="select 42;\n", capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
    failing = envkit_cli("exec", db_run, "db", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (failing.returncode, failing.stdout, failing.stderr) == (3, "out\n", "err\n")


def test_exec_it_in_a_pseudo_terminal(db_run: str) -> None:
    exe = Path(sys.executable).with_name("envkit")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen([str(exe), "exec", "-it", db_run, "db", "--", "sh"], stdin=slave, stdout=slave,
                            stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    seen = b""

    def until(text: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            left = deadline - time.monotonic()
            assert left > 0, seen
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal closed
                    break
        assert text in seen, seen

    try:
        until(b"$ ")  # the container's shell prompts
        os.write(master, b"echo hi-$((6*7)); tty; stty size\r")
        until(b"hi-42")  # typed in, run by the container's shell, echoed back as it happens
        until(b"33 111")  # the container's terminal has this terminal's size
        assert b"/dev/pts/" in seen
        os.write(master, b"exit 4\r")
        assert proc.wait(timeout=30) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_a_dead_service_is_named_by_outputs_exec_and_status(backend: Backend) -> None:
    run = f"it-dead-{os.getpid()}"
    envkit_cli("up", "blueprints/shop", "--only", "db", "--no-seed", "--name", run, check=True)  # rows: not needed
    try:
        container = f"envkit-{run}-db-1"
        backend.kill_container(container, "SIGKILL")
        assert backend.wait_container(container, 30) is not None
        outputs = envkit_cli("outputs", run)
        assert outputs.returncode == 6
        assert "service db: exited with code 137 at " in outputs.stderr
        assert f"its ports are gone; see `envkit logs {run} db`" in outputs.stderr
        assert "publishes no port" not in outputs.stderr
        exec_ = envkit_cli("exec", run, "db", "--", "true")
        assert exec_.returncode == 6 and "service db: exited with code 137" in exec_.stderr
        status = envkit_cli("status", run)
        assert status.returncode == 6 and "failed: exited with code 137" in status.stdout
    finally:
        assert envkit_cli("down", run).returncode == 0
    assert resources_of(backend, run) == []
    gone = envkit_cli("down", run)
    assert (gone.returncode, gone.stderr.strip()) == (0, f"no run {run}: nothing to remove")
    assert envkit_cli("down", "--strict", run).returncode == 7


def test_a_busy_pinned_port_is_named(backend: Backend, tmp_path: Path) -> None:
    image = build_small_image(backend, tmp_path / "img", SMALL)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "blueprint.yaml").write_text(
            f"name: busy\nservices:\n  web:\n    image: {image}\n    ports: ['{port}:8000']\n")
        run = f"it-busy-{os.getpid()}"
        result = envkit_cli("up", str(tmp_path), "--name", run)
    assert result.returncode == 6, result.stderr
    assert f"service web: cannot start: host port 127.0.0.1:{port} is already in use" in result.stderr
    assert "without a host part" in result.stderr
    assert resources_of(backend, run) == []


def test_a_compose_file_imported_then_brought_up(backend: Backend, tmp_path: Path) -> None:
    # An image with an ENTRYPOINT and a HEALTHCHECK that fail: `entrypoint: []` must clear the one and
    # `healthcheck: {disable: true}` turn the other off; a secret and a config from files must be where
    # Compose puts them; a service that crashes under its healthcheck is named as exited.
    image = build_small_image(backend, tmp_path / "img", 'FROM debian:bookworm-slim\nENTRYPOINT ["false"]\n'
                              'HEALTHCHECK --interval=1s CMD ["false"]\n')
    (tmp_path / "token.txt").write_text("t0ken\n", encoding="utf-8")
    (tmp_path / "site.conf").write_text("listen 80;\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(f"""\
services:
  debug:
    image: {image}
    entrypoint: []
    command: [sleep, infinity]
    healthcheck: {{disable: true}}
    secrets: [token]
    configs: [{{source: site, target: /etc/site.conf}}]
  crash:
    image: {image}
    profiles: [crash]
    entrypoint: [sh, -c, 'echo "fatal: no config" >&2; exit 1']
    healthcheck: {{test: [CMD-SHELL, "test -f /tmp/ready"], interval: 1s, retries: 30}}
secrets:
  token: {{file: ./token.txt}}
configs:
  site: {{file: ./site.conf}}
""", encoding="utf-8")
    imported = envkit_cli("import", str(tmp_path), "-o", str(tmp_path / "blueprint.yaml"))
    assert imported.returncode == 0 and "validates" in imported.stderr, imported.stderr
    run = f"it-imported-{os.getpid()}"
    try:
        envkit_cli("up", str(tmp_path / "blueprint.yaml"), "--name", run, check=True)
        got = envkit_cli("exec", run, "debug", "--", "sh", "-c",
                         "tr '\\0' ' ' < /proc/1/cmdline; cat /run/secrets/token /etc/site.conf", check=True)
        assert got.stdout.split("\n")[:3] == ["sleep infinity t0ken", "listen 80;", ""]
        container = f"envkit-{run}-debug-1"
        assert backend.inspect_container(container).health is None  # no HEALTHCHECK runs in it
    finally:
        assert envkit_cli("down", run).returncode == 0
    assert resources_of(backend, run) == []
    envkit_cli("import", str(tmp_path), "--profile", "crash", "-o", str(tmp_path / "crash.yaml"), check=True)
    crashed = envkit_cli("up", str(tmp_path / "crash.yaml"), "--name", run, "--only", "crash",
                         "--artifacts", str(tmp_path / "artifacts"))  # its forensics bundle: not left in /tmp
    assert crashed.returncode == 6
    assert "error: service crash: exited with code 1 before it was ready" in crashed.stderr, crashed.stderr
    assert "fatal: no config" in crashed.stderr and "cannot run" not in crashed.stderr
    assert resources_of(backend, run) == []


def test_init_true_passes_the_stop_signal_on(backend: Backend, tmp_path: Path) -> None:
    # `sleep` as PID 1 ignores SIGTERM: without an init process a stop waits out the grace and kills it
    # (137); Compose's `init: true`, imported, runs docker-init, which passes SIGTERM on (143).
    image = build_small_image(backend, tmp_path / "img", SMALL)
    (tmp_path / "compose.yaml").write_text(f"""\
x-worker: &worker
  image: {image}
  stop_grace_period: 2s
services:
  with-init: {{<<: *worker, init: true}}
  without: *worker
""", encoding="utf-8")
    imported = envkit_cli("import", str(tmp_path), "-o", str(tmp_path / "blueprint.yaml"))
    assert imported.returncode == 0 and "validates" in imported.stderr and "note:" not in imported.stderr, \
        imported.stderr
    run = f"it-init-{os.getpid()}"
    try:
        envkit_cli("up", str(tmp_path / "blueprint.yaml"), "--name", run, check=True)
        got = envkit_cli("exec", run, "with-init", "--", "cat", "/proc/1/comm", check=True)
        assert got.stdout.strip() == "docker-init"
        envkit_cli("stop", run, "with-init", "without", check=True)
        codes = {s: backend.inspect_container(f"envkit-{run}-{s}-1").exit_code for s in ("with-init", "without")}
        assert codes == {"with-init": 143, "without": 137}
    finally:
        assert envkit_cli("down", run).returncode == 0
    assert resources_of(backend, run) == []
