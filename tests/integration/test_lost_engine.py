"""A lost engine connection in the middle of ``up``, on the real engine.

``envkit up`` talks to the engine through a small TCP relay on 127.0.0.1 (DOCKER_HOST=tcp://…) that
forwards to the engine's socket. Killing the relay once the run's containers exist is the engine going
away: ``up`` must end with a clear error (exit 4, no traceback) that says what happened and who removes
the run. Once the relay is back on the same port (the engine reachable again), the run's watchdog
removes it with no further command; without a watchdog, ``envkit gc`` judges it collectable (its `up`
never finished) and removes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import gc, sweep
from envkit import labels as L
from envkit.backends import Backend

from .conftest import BLUEPRINTS, ROOT, envkit_cli, resources_of

ENVKIT = str(Path(sys.executable).with_name("envkit"))
# The engine's socket: the relay forwards to it (a DOCKER_HOST of unix://… wins, as for the engine itself).
SOCKET = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
pytestmark = pytest.mark.skipif(not SOCKET.startswith("/"), reason="the relay forwards to a local unix socket")

RELAY = r"""
import socket, sys, threading

def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[2])))
server.listen(128)
print(server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    engine = socket.socket(socket.AF_UNIX)
    engine.connect(sys.argv[1])
    for x, y in ((client, engine), (engine, client)):
        threading.Thread(target=pump, args=(x, y), daemon=True).start()
"""

# Every kind of resource, and a service that never gets ready: `up` is still waiting when the relay dies.
BLUEPRINT = """
name: lost
networks: {{front: {{}}, back: {{}}}}
volumes: {{data: {{}}}}
services:
  waits:
    build: {web}
    allow: [host-paths]
    command: [sleep, infinity]
    networks: [front, back]
    volumes: ["data:/data"]
    ready: {{tcp: 9999, timeout: 120s}}
  after:
    build: {web}
    allow: [host-paths]
    command: [sleep, infinity]
    networks: [back]
    depends_on: [waits]
"""


class Relay:
    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RELAY, SOCKET, str(port)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    folder = tmp_path / "lost"
    folder.mkdir()
    (folder / "blueprint.yaml").write_text(BLUEPRINT.format(web=BLUEPRINTS / "hello" / "web"), encoding="utf-8")
    return folder


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    started: list[Relay] = []
    yield started
    for relay in started:
        relay.kill()


def lose_the_engine_during_up(backend: Backend, blueprint: Path, run_id: str, relays: list[Relay],
                              extra: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """``envkit up`` through a relay that is killed once the run's containers run; returns the outcome
    and the relay's port."""
    relays.append(Relay())
    port = relays[0].port
    env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", sweep.SWEEP_SWITCH: "off", **extra}
    up = subprocess.Popen([ENVKIT, "up", str(blueprint), "--name", run_id, "--artifacts", str(blueprint.parent)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sum(c.running for c in backend.list_containers({L.RUN: run_id})) < 2:
            assert up.poll() is None and time.monotonic() < deadline, up.communicate()
            time.sleep(0.1)
        relays[0].kill()  # the engine goes away, mid-up
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGKILL)
            up.communicate()
    return subprocess.CompletedProcess(up.args, up.returncode, out, err), port


def assert_clear_error(result: subprocess.CompletedProcess[str], run_id: str) -> None:
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert (f"error: lost the connection to the docker engine while run {run_id} was coming up: "
            in result.stderr), result.stderr
    assert f"run {run_id} is partly made and could not be removed (cannot reach the Docker engine at" in result.stderr
    assert f"(or `envkit down {run_id}`); check the engine (Docker: `docker info`)" in result.stderr


def wait_gone(backend: Backend, run_id: str, seconds: float) -> float:
    began = time.monotonic()
    while resources_of(backend, run_id) and time.monotonic() - began < seconds:
        time.sleep(0.2)
    return time.monotonic() - began


def test_the_watchdog_removes_the_run_once_the_engine_is_back(backend: Backend, blueprint: Path,
                                                             relays: list[Relay]) -> None:
    run_id = "it-lost-watch"
    try:
        result, port = lose_the_engine_during_up(backend, blueprint, run_id, relays, {})
        assert_clear_error(result, run_id)
        assert "its watchdog removes the run if that is within 50 s, and after that `envkit gc` does" in result.stderr
        assert resources_of(backend, run_id)  # nothing could be removed while the engine was away
        summary = (blueprint.parent / run_id / "SUMMARY.txt").read_text(encoding="utf-8")
        assert "no service is at fault: the connection to the engine was lost: " in summary
        relays.append(Relay(port))  # the engine is reachable again, at the same address
        took = wait_gone(backend, run_id, 30)
        print(f"engine back -> the watchdog removed the run in {took:.2f} s")
        assert resources_of(backend, run_id) == []
    finally:
        envkit_cli("down", run_id)


def test_without_a_watchdog_gc_removes_the_run_once_the_engine_is_back(backend: Backend, blueprint: Path,
                                                                      relays: list[Relay]) -> None:
    run_id = "it-lost-gc"
    try:
        result, _ = lose_the_engine_during_up(backend, blueprint, run_id, relays, {"ENVKIT_REAPER": "0"})
        assert_clear_error(result, run_id)
        assert "once the engine answers again, `envkit gc` removes the run" in result.stderr
        assert resources_of(backend, run_id)
        # `envkit up` made it detached with a 4 h expiry: what gc goes by is its claim (the `up` never ended).
        dry = envkit_cli("gc", "--dry-run", check=True, env={sweep.SWEEP_SWITCH: "off"})
        assert f"would remove run {run_id}: its `up` never finished (its claim is left) and owner process" in dry.stderr
        found = gc.survey(backend)  # removal limited to this run: other sessions share the engine
        gc.collect(backend, gc.Survey(tuple(g for g in found.runs if g.run_id == run_id), ()))
        assert resources_of(backend, run_id) == []
    finally:
        envkit_cli("down", run_id)
