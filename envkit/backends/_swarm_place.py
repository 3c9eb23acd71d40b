"""Where the Swarm backend's tasks may run, and what became of the nodes they ran on.

Each envkit replica is its own Swarm service of one task (``swarm.py``), so Swarm's own per-service
placement (``MaxReplicas``) cannot see a blueprint service's other replicas; envkit turns the blueprint's
``placement`` into per-task constraints itself:

- ``constraints`` are the service's own (Swarm checks them);
- ``max_per_node: M``: nodes that already run M replicas of the same blueprint service in this run get
  ``node.id!=ID``;
- ``preferences: [{spread: LABEL}]``: the replica goes to the value of LABEL (nodes without it: one more
  value) whose nodes run the fewest replicas of the service in this run, as a constraint ``LABEL==VALUE``
  (or ``LABEL!=...`` of every other value); several labels in order, each within the last one's choice.
  Only nodes that are up, active and meet the other constraints count, so it never makes a task
  unschedulable. (Swarm's own spread sees the one task of each service, like ``MaxReplicas``);
- a **named volume** pins every task that mounts it to one node (Swarm volumes are node-local): for the
  first task mounting it envkit chooses the node (ready, active, meeting the service's constraints, the
  fewest running tasks), every task mounting it gets ``node.hostname==HOST`` and the service the label
  ``io.envkit.node=HOST``, where later tasks of the run mounting the same volume find it. So replicas and
  services sharing a volume share its data, and a service made again in the run finds it. (Chosen before
  the service is made: a label changed afterwards makes Swarm replace the task.)

Published ports are host-mode (no ingress mesh): a port is free on a node until a task there uses it,
so each new service gets the least used ports of ``ENVKIT_SWARM_PUBLISH`` and Swarm places its task on a
node where they are free.

Nodes are read from the manager at most once a second: a task whose node is not ``ready`` (a node
container killed, a host gone) is *lost*, which ``_swarm_wire.state`` reports as such.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envkit import labels as L
from envkit.backends.base import ContainerSpec

__all__ = ["NODE_LABEL", "NodeInfo", "Nodes", "choose", "extra_constraints", "host_ports", "least_used", "meets",
           "pinned_volumes",
           "replicas_by_node", "spread_constraints"]

#: on a service that mounts a named volume: the hostname of the node its volumes live on
NODE_LABEL = f"{L.NS}.node"
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    address: str
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    #: what constraints test: node.id, node.hostname, node.role, node.platform.os|arch, node.labels.K, engine.labels.K
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def up(self) -> bool:
        return self.state == "ready"

    def lost(self) -> str:
        return f"was lost with node {self.hostname} (node {self.state})"


class Nodes:
    """The manager's node list, read again when older than ``ttl`` seconds."""

    def __init__(self, read: Callable[[], Iterable[Mapping[str, Any]]], ttl: float = 1.0) -> None:
        self._read, self._ttl = read, ttl
        self._at = -1e9
        self._nodes: dict[str, NodeInfo] = {}

    def all(self, fresh: bool = False) -> dict[str, NodeInfo]:
        if fresh or time.monotonic() - self._at > self._ttl:
            found = {}
            for n in self._read():
                status = n.get("Status") or {}
                found[str(n["ID"])] = NodeInfo(
                    str(n["ID"]), str((n.get("Description") or {}).get("Hostname") or "?"),
                    str(status.get("Addr") or ""), str(status.get("State") or "unknown"),
                    str((n.get("Spec") or {}).get("Availability") or "active"), _attributes(n))
            self._nodes, self._at = found, time.monotonic()
        return self._nodes

    def get(self, node_id: str) -> NodeInfo | None:
        if not node_id:
            return None
        node = self.all().get(node_id)
        if node is None:  # joined since the last read
            self._at = -1e9
            node = self.all().get(node_id)
        return node

    def down(self) -> set[str]:
        """Hostnames of the nodes that are not ready."""
        return {n.hostname for n in self.all().values() if not n.up}


def _attributes(node: Mapping[str, Any]) -> dict[str, str]:
    spec, description = node.get("Spec") or {}, node.get("Description") or {}
    platform = description.get("Platform") or {}
    out = {"node.id": str(node.get("ID", "")), "node.hostname": str(description.get("Hostname", "")),
           "node.role": str(spec.get("Role", "")), "node.platform.os": str(platform.get("OS", "")).lower(),
           "node.platform.arch": str(platform.get("Architecture", ""))}
    out.update({f"node.labels.{k}": str(v) for k, v in (spec.get("Labels") or {}).items()})
    out.update({f"engine.labels.{k}": str(v) for k, v in ((description.get("Engine") or {}).get("Labels") or {}).items()})
    return out


def meets(node: NodeInfo, constraint: str) -> bool:
    """Whether ``node`` meets one ``ATTRIBUTE==VALUE`` / ``ATTRIBUTE!=VALUE`` constraint (as Swarm reads it)."""
    attribute, op, wanted = re.split(r"\s*(==|!=)\s*", constraint.strip(), maxsplit=1)
    have = node.attributes.get(attribute)
    return (have == wanted) if op == "==" else (have != wanted)


def choose(nodes: Iterable[NodeInfo], constraints: Iterable[str], load: Mapping[str, int]) -> NodeInfo | None:
    """The node for a run's first task mounting a volume: up, active, meeting ``constraints``, the least
    ``load`` (running tasks by node id) first; None when no node qualifies (Swarm then says why)."""
    wanted = list(constraints)
    fit = [n for n in nodes if n.up and n.availability == "active" and all(meets(n, c) for c in wanted)]
    return min(fit, key=lambda n: (load.get(n.id, 0), n.hostname)) if fit else None


def pinned_volumes(spec: ContainerSpec) -> set[str]:
    return {m.source for m in spec.mounts if m.type == "volume"}


def replicas_by_node(spec: ContainerSpec, run_services: list[dict[str, Any]],
                     task_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]) -> dict[str, int]:
    """How many replicas of ``spec``'s blueprint service run on each node (by id), among ``run_services``."""
    service = dict(spec.labels).get(L.SERVICE)
    per_node: dict[str, int] = {}
    for svc in run_services:
        if (svc["Spec"].get("Labels") or {}).get(L.SERVICE) == service:
            task = task_of(svc) or {}
            if task.get("NodeID") and (task.get("Status") or {}).get("State") not in ENDED:
                per_node[str(task["NodeID"])] = per_node.get(str(task["NodeID"]), 0) + 1
    return per_node


def extra_constraints(spec: ContainerSpec, run_services: list[dict[str, Any]],
                      task_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]) -> tuple[list[str], str | None]:
    """The constraints envkit adds to ``spec``'s task for its volumes and ``max_per_node`` (see the module
    text), and the hostname its volumes are pinned to (None: not pinned yet, or no volume)."""
    extra: list[str] = []
    volumes = pinned_volumes(spec)
    pinned: str | None = None
    for svc in run_services:
        labels = svc["Spec"].get("Labels") or {}
        mounts = svc["Spec"]["TaskTemplate"].get("ContainerSpec", {}).get("Mounts") or []
        if pinned is None and labels.get(NODE_LABEL) and volumes & {m.get("Source") for m in mounts}:
            pinned = str(labels[NODE_LABEL])
    if pinned is not None:
        extra.append(f"node.hostname=={pinned}")
    if spec.placement and spec.placement.max_per_node:
        per_node = replicas_by_node(spec, run_services, task_of)
        extra += [f"node.id!={node}" for node, n in sorted(per_node.items()) if n >= spec.placement.max_per_node]
    return extra, pinned


def spread_constraints(spread: Iterable[str], nodes: Iterable[NodeInfo], constraints: Iterable[str],
                       placed: Mapping[str, int]) -> list[str]:
    """The constraints that send the next replica to the least used value of each label of ``spread``
    (see the module text); ``placed``: the service's replicas by node id."""
    wanted = list(constraints)
    fit = [n for n in nodes if n.up and n.availability == "active" and all(meets(n, c) for c in wanted)]
    out: list[str] = []
    for label in spread:
        groups: dict[str | None, list[NodeInfo]] = {}
        for node in fit:
            groups.setdefault(node.attributes.get(label), []).append(node)
        if len(groups) < 2:  # one value (or no node at all): nothing to choose
            continue
        value = min(groups, key=lambda v: (sum(placed.get(n.id, 0) for n in groups[v]), v is None, v or ""))
        out += [f"{label}=={value}"] if value is not None else [f"{label}!={v}" for v in sorted(
            v for v in groups if v is not None)]
        fit = groups[value]
    return out


def least_used(services: Iterable[Mapping[str, Any]], publish: Iterable[int],
               avoid: Collection[int] = ()) -> list[int]:
    """The ports of ``publish``, those published by the fewest of ``services`` first (read from each
    service's spec: there from its creation on), those of ``avoid`` (found taken on the only nodes a task
    may run on) last."""
    used: dict[int, int] = {}
    for svc in services:
        for port in {p.get("PublishedPort", 0) for p in ((svc.get("Spec") or {}).get("EndpointSpec") or {})
                     .get("Ports") or []}:
            used[port] = used.get(port, 0) + 1
    return sorted(publish, key=lambda port: (port in avoid, used.get(port, 0), port))


def host_ports(spec: ContainerSpec, free: list[int]) -> list[dict[str, Any]]:
    """The service's published ports in host mode: the blueprint's host port, else the next of ``free``."""
    free = list(free)
    return [{"Protocol": p.container.protocol, "TargetPort": p.container.number,
             "PublishedPort": p.host_port or free.pop(0), "PublishMode": "host"} for p in spec.ports]
