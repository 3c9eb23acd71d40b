"""The blueprint's ``placement`` (read, handed to the engine, exported to Compose), the Swarm backend's own
placement decisions (envkit/backends/_swarm_place.py) and what it reports of a task whose node is lost.
The backend runs against a real swarm in tests/swarm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from envkit import stopped
from envkit.backends import _swarm_wire as wire
from envkit.backends._swarm_nodes import parse_nodes
from envkit.backends._swarm_place import (
    NODE_LABEL,
    Nodes,
    choose,
    extra_constraints,
    host_ports,
    least_used,
    meets,
    replicas_by_node,
    spread_constraints,
)
from envkit.backends.base import Capability, ContainerSpec, MountSpec, Placement, PortBinding, PortKey
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import BlueprintError
from envkit.export import to_compose
from envkit.plan import RunIdentity, make_plan
from envkit.steps import CreateContainer

IDENTITY = RunIdentity("r1", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
TEXT = """\
services:
  api:
    image: app
    replicas: 2
    placement:
      constraints: "node.labels.zone == a"
      max_per_node: 1
  db:
    image: app
    snapshot: true
"""


def _node(ident: str, host: str, state: str = "ready", role: str = "worker", **labels: str) -> dict[str, Any]:
    return {"ID": ident, "Description": {"Hostname": host, "Platform": {"OS": "linux", "Architecture": "x86_64"}},
            "Status": {"State": state, "Addr": f"10.0.0.{ident[-1]}"},
            "Spec": {"Role": role, "Availability": "active", "Labels": labels}}


NODES = [_node("n1", "one", role="manager", zone="a"), _node("n2", "two", zone="b"), _node("n3", "three", "down", zone="a")]


def test_placement_is_read_and_handed_to_the_engine(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(TEXT)
    assert bp.services["api"].placement == Placement(("node.labels.zone==a",), 1)
    plan = make_plan(bp, IDENTITY, frozenset({"app"}), {}, ("api",), capabilities=frozenset(Capability), engine="fake")
    specs = [s.payload.spec for s in plan.steps if isinstance(s.payload, CreateContainer)]
    assert [s.placement for s in specs] == [Placement(("node.labels.zone==a",), 1)] * 2
    deploy = to_compose(bp, {}).document["services"]["api"]["deploy"]
    assert deploy == {"replicas": 2, "placement": {"constraints": ["node.labels.zone==a"], "max_replicas_per_node": 1}}


def test_a_snapshot_is_refused_at_its_key_on_an_engine_that_cannot_export(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(TEXT)
    fake = FakeBackend(images={"app"}, capabilities=set(Capability) - {Capability.EXPORT_FILESYSTEM})
    with pytest.raises(BlueprintError, match=r":10:\d+ services\.db\.snapshot: engine fake cannot export"):
        make_plan(bp, IDENTITY, frozenset({"app"}), {}, (), capabilities=fake.capabilities, engine=fake.name)


def test_constraints_are_met_as_swarm_reads_them() -> None:
    nodes = Nodes(lambda: NODES).all()
    one, two, three = nodes["n1"], nodes["n2"], nodes["n3"]
    assert meets(one, "node.labels.zone==a") and not meets(two, "node.labels.zone==a")
    assert meets(two, "node.role!=manager") and not meets(one, "node.role!=manager")
    assert meets(one, "node.platform.os==linux") and meets(two, "node.labels.missing!=x")
    assert choose(nodes.values(), ["node.labels.zone==a"], {}) == one  # three meets it too, but is down
    assert choose(nodes.values(), [], {"n1": 4, "n2": 1}) == two  # the least loaded
    assert choose(nodes.values(), ["node.labels.zone==c"], {}) is None
    assert three.lost() == "was lost with node three (node down)" and Nodes(lambda: NODES).down() == {"three"}


def _service(name: str, service: str, node: str, mounts: tuple[str, ...] = (), pinned: str = "") -> dict[str, Any]:
    labels = {"io.envkit.service": service, **({NODE_LABEL: pinned} if pinned else {})}
    return {"Spec": {"Name": name, "Labels": labels, "TaskTemplate": {"ContainerSpec": {
        "Mounts": [{"Source": m, "Target": "/d", "Type": "volume"} for m in mounts]}}},
        "task": {"NodeID": node, "Status": {"State": "running"}}}


def test_max_per_node_and_a_volume_become_constraints_of_the_next_task() -> None:
    spec = ContainerSpec("envkit-r1-api-3", "app", (("io.envkit.service", "api"),), (),
                         mounts=(MountSpec("volume", "envkit-r1-data", "/d", False),), placement=Placement((), 1))
    others = [_service("envkit-r1-api-1", "api", "n1"), _service("envkit-r1-api-2", "api", "n2"),
              _service("envkit-r1-db-1", "db", "n2", ("envkit-r1-data",), pinned="two")]
    extra, pinned = extra_constraints(spec, others, lambda s: s["task"])
    assert pinned == "two"
    assert extra == ["node.hostname==two", "node.id!=n1", "node.id!=n2"]  # Swarm then says why it cannot place it
    alone, none = extra_constraints(spec, [], lambda s: s["task"])
    assert (alone, none) == ([], None)  # the run's first task with the volume: the backend chooses its node
    template, _ = wire.task_template(spec, tuple(extra))
    assert template["Placement"]["Constraints"] == extra


def test_a_task_on_a_lost_node_is_dead_and_says_which_node() -> None:
    nodes = Nodes(lambda: NODES)
    service = {"Spec": {"Name": "envkit-r1-api-1", "Labels": {}, "TaskTemplate": {"ContainerSpec": {}}}}
    task = {"NodeID": "n3", "Status": {"State": "running", "PortStatus": {"Ports": [
        {"TargetPort": 8000, "PublishedPort": 30000, "Protocol": "tcp"}]}}}
    state = wire.state(nodes.get, parse_nodes({}), service, task)
    assert (state.status, state.lost, dict(state.ports)) == ("dead", "was lost with node three (node down)", {})
    assert stopped.reason(state) == "was lost with node three (node down)"
    alive = wire.state(nodes.get, parse_nodes({}), service, {**task, "NodeID": "n2"})
    assert alive.status == "running" and alive.lost is None and len(alive.ports) == 1


def test_values_with_braces_stay_literal_through_swarms_templates() -> None:
    spec = ContainerSpec("envkit-r1-stub-1", "app", (("team", "a{{b"),), (),
                         environment=(("ROUTES", '{"id": "ch_{{request.id}}"}'),),
                         mounts=(MountSpec("volume", "envkit-r1-data", "/d/{{x}}", False),), hostname="h{{")
    template, _ = wire.task_template(spec)
    container = template["ContainerSpec"]
    assert container["Env"] == ['ROUTES={"id": "ch_{{"{{"}}request.id}}"}']  # Go's template prints the text "{{"
    assert container["Hostname"] == 'h{{"{{"}}'
    [mount] = container["Mounts"]  # Swarm expands a mount's target and its volume's labels too
    assert (mount["Target"], mount["VolumeOptions"]["Labels"]) == ('/d/{{"{{"}}x}}', {"team": 'a{{"{{"}}b'})
    assert container["Labels"] == {"team": "a{{b"}  # not expanded: as written
    service = {"Spec": {"Name": spec.name, "Labels": {}, "TaskTemplate": {"ContainerSpec": container}}}
    state = wire.state(Nodes(lambda: NODES).get, parse_nodes({}), service, None)
    assert state.environment == dict(spec.environment) and state.mounts == spec.mounts


def test_preferences_are_read_and_exported(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("services:\n  api:\n    image: app\n    replicas: 4\n    placement:\n"
                   "      preferences: [{spread: node.labels.zone}, {spread: engine.labels.rack}]\n")
    assert bp.services["api"].placement == Placement((), None, ("node.labels.zone", "engine.labels.rack"))
    deploy = to_compose(bp, {}).document["services"]["api"]["deploy"]
    assert deploy["placement"] == {"preferences": [{"spread": "node.labels.zone"}, {"spread": "engine.labels.rack"}]}
    with pytest.raises(BlueprintError, match=r"services\.api\.placement\.preferences\[0\]\.spread: 'node\.role' is not "
                                             r"a label to spread over"):
        load_text("services:\n  api:\n    image: app\n    placement:\n      preferences: [{spread: node.role}]\n")


def test_spread_sends_the_next_replica_to_the_least_used_value_of_the_label() -> None:
    nodes = Nodes(lambda: [_node("n1", "one", zone="a", rack="r1"), _node("n2", "two", zone="a", rack="r2"),
                           _node("n3", "three", zone="b"), _node("n4", "four"), _node("n5", "five", "down", zone="c")]).all()
    spread = ("node.labels.zone",)
    assert spread_constraints(spread, nodes.values(), [], {}) == ["node.labels.zone==a"]  # ties: named values first
    assert spread_constraints(spread, nodes.values(), [], {"n1": 1}) == ["node.labels.zone==b"]  # c's node is down
    # nodes without the label are one more value: every other value excluded
    assert spread_constraints(spread, nodes.values(), [], {"n1": 1, "n3": 1}) == [
        "node.labels.zone!=a", "node.labels.zone!=b"]
    # in order: the zone, then the rack within it
    assert spread_constraints((*spread, "node.labels.rack"), nodes.values(), [], {"n1": 1, "n3": 1, "n4": 1}) == [
        "node.labels.zone==a", "node.labels.rack==r2"]
    # only nodes meeting the service's constraints count: never unschedulable
    assert spread_constraints(spread, nodes.values(), ["node.labels.zone!=a"], {"n1": 1, "n4": 5}) == [
        "node.labels.zone==b"]
    assert spread_constraints(spread, nodes.values(), ["node.labels.zone!=a"], {"n3": 5}) == ["node.labels.zone!=b"]
    assert spread_constraints(spread, nodes.values(), ["node.hostname==one"], {}) == []  # one value: no choice
    others = [_service("envkit-r1-api-1", "api", "n1"), _service("envkit-r1-api-2", "api", "n1"),
              _service("envkit-r1-db-1", "db", "n3")]
    spec = ContainerSpec("envkit-r1-api-3", "app", (("io.envkit.service", "api"),), ())
    assert replicas_by_node(spec, others, lambda s: s["task"]) == {"n1": 2}


def test_host_ports_are_the_least_used_of_the_range() -> None:
    services = [{"Spec": {"EndpointSpec": {"Ports": [{"PublishedPort": 30000}, {"PublishedPort": 30001}]}}},
                {"Spec": {"EndpointSpec": {"Ports": [{"PublishedPort": 30000}]}}}, {"Spec": {}}]
    assert least_used(services, range(30000, 30003)) == [30002, 30001, 30000]
    # a port found taken on the only node the task may run on comes last, however little used elsewhere
    assert least_used(services, range(30000, 30003), avoid={30002}) == [30001, 30000, 30002]
    spec = ContainerSpec("x", "app", (), (), ports=(PortBinding(PortKey(80, "tcp")),
                                                    PortBinding(PortKey(53, "udp"), host_port=5353)))
    assert host_ports(spec, [30002]) == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30002, "PublishMode": "host"},
        {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 5353, "PublishMode": "host"}]
