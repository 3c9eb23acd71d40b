"""Placement, volumes and node loss on the real swarm of three engines (tests/swarm/rig), one rig for the
module, always torn down at its end:

- ``placement`` from the blueprint (a constraint, ``max_per_node``) decides the nodes; a placement no node
  meets is an error with Swarm's reason, not a hang;
- a named volume pins every task that mounts it to one node: a seed's data is seen by the service's other
  replica and by another service mounting the volume; snapshots are refused at plan time;
- a node killed during a run (its container stopped) is reported naming the services that ran on it: by
  the readiness wait of an ``up`` in progress and by ``envkit status`` of a run that was up. That test is
  the module's last: the rig goes down after it (a stopped rig node does not start again)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends._swarm_place import NODE_LABEL
from envkit.errors import BlueprintError, EngineError, ServiceFailed

from . import rig

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "blueprints" / "hello"
WEB: dict[str, Any] = {"build": "./web", "stop_grace_period": "1s"}


@pytest.fixture(scope="module")
def local_images() -> dict[str, float]:
    """hello's web image, built on this machine's engine (the rig loads it into every node)."""
    local = connect("docker", {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"})
    try:
        env = api.up({"name": "swarm-images", "services": {"web": WEB}}, directory=HELLO, backend=local)
        tags = sorted({c.labels[L.IMAGE] for c in local.list_containers({L.RUN: env.run_id})})
        env.down()
    finally:
        local.close()
    return {tag: 0.0 for tag in tags}


def _nodes(backend: Backend, run: str) -> dict[str, str]:
    """container name -> hostname of the node its task runs on."""
    api_ = backend.api  # type: ignore[attr-defined]
    hosts = {n["ID"]: n["Description"]["Hostname"] for n in api_.nodes()}
    out = {}
    for s in api_.services(filters={"label": [f"{L.RUN}={run}"]}):
        tasks = sorted(api_.tasks(filters={"service": s["ID"]}), key=lambda t: t["CreatedAt"])
        out[s["Spec"]["Name"]] = hosts.get(tasks[-1].get("NodeID", ""), "?") if tasks else "?"
    return out


def test_placement_and_a_volume_pinned_to_one_node(backend: Backend) -> None:
    bp = {"name": "swarm-place", "volumes": {"data": {}}, "services": {
        "store": {**WEB, "replicas": 2, "volumes": ["data:/data"],
                  "seed": [{"exec": {"command": ["sh", "-c", "echo seeded > /data/mark"], "user": "root"}}]},
        "reader": {**WEB, "volumes": ["data:/data"], "depends_on": ["store"],
                   "ready": {"exec": ["test", "-e", "/data/mark"], "timeout": "20s"}},
        "spread": {**WEB, "replicas": 3, "placement": {"max_per_node": 1}},
        "fixed": {**WEB, "placement": {"constraints": ["node.hostname==rig-node3"]}},
    }}
    env = api.up(bp, directory=HELLO, backend=backend)
    try:
        where = _nodes(backend, env.run_id)
        name = env.run_id
        pinned = {where[f"envkit-{name}-store-1"], where[f"envkit-{name}-store-2"], where[f"envkit-{name}-reader-1"]}
        assert len(pinned) == 1, where  # both replicas and the other service: the volume's one node
        assert len({where[f"envkit-{name}-spread-{i}"] for i in (1, 2, 3)}) == 3, where
        assert where[f"envkit-{name}-fixed-1"] == "rig-node3"
        labels = {s["Spec"]["Name"]: s["Spec"]["Labels"].get(NODE_LABEL)
                  for s in backend.api.services(filters={"label": [f"{L.RUN}={name}"]})}  # type: ignore[attr-defined]
        assert {labels[n] for n in labels if "-store-" in n or "-reader-" in n} == pinned  # recorded
        assert env.exec("store", ["cat", "/data/mark"], replica=2).output.strip() == "seeded"
    finally:
        env.down()
    assert backend.list_resources({L.RUN: env.run_id}) == []


def test_a_placement_no_node_meets_is_an_error_not_a_hang(backend: Backend) -> None:
    bp = {"name": "swarm-nowhere", "services": {"x": {**WEB, "placement": {"constraints": "node.labels.zone==nowhere"}}}}
    with pytest.raises((ServiceFailed, EngineError), match="no suitable node"):  # Swarm would keep it pending
        api.up(bp, directory=HELLO, backend=backend)
    assert backend.list_resources({L.BLUEPRINT: "swarm-nowhere"}) == []


def test_snapshots_are_refused_at_plan_time(backend: Backend) -> None:
    bp = {"name": "swarm-snap", "volumes": {"data": {}},
          "services": {"db": {**WEB, "volumes": ["data:/data"], "snapshot": True}}}
    with pytest.raises(BlueprintError, match=r"services\.db\.snapshot.*engine swarm"):
        api.up(bp, directory=HELLO, backend=backend)
    assert backend.list_resources({L.BLUEPRINT: "swarm-snap"}) == []


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
    up_run = {"name": "swarm-lost", "services": {
        "far": {**WEB, "replicas": 2, "placement": {"constraints": "node.hostname==rig-node3"}},
        "near": {**WEB, "placement": {"constraints": "node.hostname==rig-node2"}}}}
    waiting = {"name": "swarm-lost-wait", "services": {
        "slow": {**WEB, "placement": {"constraints": "node.hostname==rig-node3"},
                 "ready": {"exec": ["test", "-e", "/never"], "timeout": "9m"}}}}
    env = api.up(up_run, directory=HELLO, backend=backend)
    try:
        result: dict[str, BaseException] = {}

        def second() -> None:
            try:
                api.up(waiting, directory=HELLO, backend=connect(environment={**os.environ, **swarm}))
            except BaseException as exc:  # the test reads it
                result["error"] = exc

        other = threading.Thread(target=second)
        other.start()
        deadline = time.monotonic() + 60
        while not any(c.running for c in backend.list_containers({L.BLUEPRINT: "swarm-lost-wait"})):
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
        assert backend.list_resources({L.BLUEPRINT: "swarm-lost-wait"}) == []  # its rollback worked

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
