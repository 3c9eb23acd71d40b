"""Placement and volumes on the real swarm of three engines (tests/swarm/rig, brought up by conftest.py):

- ``placement`` from the blueprint (a constraint, ``max_per_node``) decides the nodes; a placement no node
  meets is an error with Swarm's reason, not a hang;
- a named volume pins every task that mounts it to one node: a seed's data is seen by the service's other
  replica and by another service mounting the volume; snapshots are refused at plan time."""

from __future__ import annotations

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends._swarm_place import NODE_LABEL
from envkit.errors import BlueprintError, EngineError, ServiceFailed

from .conftest import HELLO, NAME, WEB

pytestmark = pytest.mark.integration
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
    bp = {"name": NAME, "volumes": {"data": {}}, "services": {
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
    bp = {"name": NAME, "services": {"x": {**WEB, "placement": {"constraints": "node.labels.zone==nowhere"}}}}
    with pytest.raises((ServiceFailed, EngineError), match="no suitable node"):  # Swarm would keep it pending
        api.up(bp, name="swarm-nowhere", directory=HELLO, backend=backend)
    assert backend.list_resources({L.RUN: "swarm-nowhere"}) == []


def test_snapshots_are_refused_at_plan_time(backend: Backend) -> None:
    bp = {"name": NAME, "volumes": {"data": {}},
          "services": {"db": {**WEB, "volumes": ["data:/data"], "snapshot": True}}}
    with pytest.raises(BlueprintError, match=r"services\.db\.snapshot.*engine swarm"):
        api.up(bp, name="swarm-snap", directory=HELLO, backend=backend)
    assert backend.list_resources({L.RUN: "swarm-snap"}) == []


def test_replicas_spread_over_the_values_of_a_node_label(backend: Backend) -> None:
    """rig-node1 rack=a, the other two without the label (one more value): 3 replicas go a, the rest, a.
    Swarm alone (one task per service, nodes with equally few tasks) would put one on each node."""
    api_ = backend.api  # type: ignore[attr-defined]
    [node] = [n for n in api_.nodes() if n["Description"]["Hostname"] == "rig-node1"]
    spec = node["Spec"]
    api_.update_node(node["ID"], node["Version"]["Index"], {**spec, "Labels": {**(spec.get("Labels") or {}), "rack": "a"}})
    try:
        bp = {"name": NAME, "services": {"web": {**WEB, "replicas": 3,
                                                  "placement": {"preferences": [{"spread": "node.labels.rack"}]}}}}
        env = api.up(bp, name="swarm-spread", directory=HELLO, backend=backend)
        try:
            where = _nodes(backend, env.run_id)
            assert sorted(where[f"envkit-swarm-spread-web-{i}"] == "rig-node1" for i in (1, 2, 3)) == [
                False, True, True], where  # in start order: a, the rest, a (the tie goes to the named value)
        finally:
            env.down()
    finally:
        node = api_.inspect_node(node["ID"])
        api_.update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Labels": {
            k: v for k, v in (node["Spec"].get("Labels") or {}).items() if k != "rack"}})
    assert backend.list_resources({L.RUN: "swarm-spread"}) == []
