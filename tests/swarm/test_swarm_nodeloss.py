"""A node killed during a run (its container stopped) on the real swarm of three engines (tests/swarm/rig)
is reported naming the services that ran on it: by the readiness wait of an ``up`` in progress and by
``envkit status`` of a run that was up; teardown still works and leaves nothing on the nodes that are up.
It runs after the package's other tests (``KILLS_A_NODE``): a stopped rig node does not come back, the
rig goes down after it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.errors import ServiceFailed

from . import rig
from .conftest import HELLO, NAME, WEB

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KILLS_A_NODE = True


def _manager(swarm: dict[str, str], *args: str) -> None:
    subprocess.run(["docker", "-H", swarm["DOCKER_HOST"], *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def node3_stopper(swarm: dict[str, str]) -> Iterator[threading.Event]:
    """Set to stop rig-node3's container (the manager's heartbeat made 1 s, so that it notices in ~3 s)."""
    _manager(swarm, "swarm", "update", "--dispatcher-heartbeat", "1s")
    go = threading.Event()

    def stop() -> None:
        if go.wait(120):
            subprocess.run(["docker", "stop", "-t", "1", "rig-node3"], check=True, capture_output=True,
                           env={**os.environ, **rig.OUTER})

    worker = threading.Thread(target=stop, daemon=True)
    worker.start()
    yield go
    go.set()
    worker.join(60)


def test_a_lost_node_is_reported_naming_its_services(backend: Backend, swarm: dict[str, str],
                                                     node3_stopper: threading.Event) -> None:
    up_run = {"name": NAME, "services": {
        "far": {**WEB, "replicas": 2, "placement": {"constraints": "node.hostname==rig-node3"}},
        "near": {**WEB, "placement": {"constraints": "node.hostname==rig-node2"}}}}
    waiting = {"name": NAME, "services": {
        "slow": {**WEB, "placement": {"constraints": "node.hostname==rig-node3"},
                 "ready": {"exec": ["test", "-e", "/never"], "timeout": "9m"}}}}
    env = api.up(up_run, directory=HELLO, backend=backend)
    try:
        result: dict[str, BaseException] = {}

        def second() -> None:
            try:
                api.up(waiting, name="swarm-lost-wait", directory=HELLO,
                       backend=connect(environment={**os.environ, **swarm}))
            except BaseException as exc:  # the test reads it
                result["error"] = exc

        other = threading.Thread(target=second)
        other.start()
        deadline = time.monotonic() + 60
        while not any(c.running for c in backend.list_containers({L.RUN: "swarm-lost-wait"})):
            assert time.monotonic() < deadline, "the waiting run's service never ran"
            time.sleep(0.5)
        t0 = time.monotonic()
        node3_stopper.set()
        other.join(300)  # well before its readiness timeout
        assert not other.is_alive(), "up kept waiting on a service whose node is gone"
        error = result.get("error")
        assert isinstance(error, ServiceFailed), error
        assert "slow" in str(error) and "was lost with node rig-node3" in str(error), str(error)
        lost_after = time.monotonic() - t0
        assert backend.list_resources({L.RUN: "swarm-lost-wait"}) == []  # its rollback worked

        cli = [sys.executable, "-c", "from envkit.cli import main; main()"]
        shown = subprocess.run([*cli, "status", env.run_id], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **swarm, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
        assert shown.returncode == 6, shown.stdout + shown.stderr
        for replica in (1, 2):
            assert f"service far (envkit-{env.run_id}-far-{replica}): failed: was lost with node rig-node3" in \
                " ".join(shown.stderr.split()), shown.stderr
        assert "near" not in shown.stderr
        print(f"\nnode lost: the waiting up failed {lost_after:.1f}s after rig-node3 was stopped")
    finally:
        env.down()
    assert backend.list_resources({L.RUN: env.run_id}) == []
    for pair in swarm["ENVKIT_SWARM_NODES"].split(","):  # the nodes that are still up: nothing left
        host, _, where = pair.partition("=")
        if host != "rig-node3":
            node = connect("docker", {"DOCKER_HOST": where})
            try:
                assert node.list_resources({L.MANAGED: "true"}) == []
            finally:
                node.close()
