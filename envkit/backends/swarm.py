"""The Docker Swarm backend: each container of a run is one Swarm service of one task.

``DOCKER_HOST`` points at a manager. envkit's model is per container (a replica has its own name,
aliases, ports, readiness), so each envkit replica becomes its own service (``replicas: 1``, or a
``replicated-job`` for ``kind: job``), named like the container, with the run's labels, on run-private
attachable overlay networks, its aliases as network aliases, ``endpoint_mode: dnsrr`` (no VIP: it needs
IPVS, which not every kernel has) and host-mode published ports (no ingress mesh, same reason) picked
from ``ENVKIT_SWARM_PUBLISH`` so that Swarm's scheduler places the task on a node where the port is
free. The service's id is its name: ``create_container`` records the spec, ``start_container`` creates
the service (the interface allows the split). State comes from the service's newest task.

Images, networks and the manager's volumes go through the Docker backend this class extends; what
differs is containers (services), networks (overlay, removed asynchronously: polled until gone) and
anything per node (``envkit.backends._swarm_nodes``: exec, logs, image copies, volumes on every node).

Capabilities: none of the optional ones (no gate, no copy, no pause or signal of a task on another
node, no network changes of a running task); the planner refuses keys that need them. Host paths
(bind mounts) and privileged containers are refused: on a swarm a host path is a node's file system.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from docker.types import EndpointSpec

from envkit import labels as L
from envkit import retry
from envkit.backends import _swarm_wire as wire
from envkit.backends._swarm_exec import NodeCalls
from envkit.backends._swarm_nodes import NodeMap, parse_nodes
from envkit.backends._swarm_place import (
    ENDED,
    NODE_LABEL,
    NodeInfo,
    Nodes,
    choose,
    extra_constraints,
    host_ports,
    least_used,
    pinned_volumes,
    replicas_by_node,
    spread_constraints,
)
from envkit.backends.base import (
    Backend,
    BuildSpec,
    Capability,
    ContainerSpec,
    ContainerState,
    NetworkSpec,
    Resource,
)
from envkit.backends.docker import DockerBackend
from envkit.errors import Busy, Conflict, EngineError, EngineUnavailable, NotFound, Transient, Unsupported

__all__ = ["SwarmBackend", "open_backend"]

#: the ports a service publishes are chosen, and the service made, by one thread of this process at a time
_PUBLISHING = threading.Lock()


class _PortTaken(EngineError):
    """The task waits for a host-mode port that every node it may run on has in use (chosen at once by
    another process): envkit chooses again."""


class SwarmBackend(NodeCalls):
    name = "swarm"
    lanes = None  # a start waits for the task on its node: the nodes work in parallel
    capabilities = frozenset({Capability.BUILD})  # built on the manager, copied to the nodes

    def __init__(self, environment: Mapping[str, str]) -> None:
        super().__init__(environment)
        self.nodes: NodeMap = parse_nodes(environment)
        self._node_backends: dict[str, DockerBackend] = {}
        self._specs: dict[str, ContainerSpec] = {}
        self._nodes = Nodes(lambda: self._retried("list nodes", self.api.nodes))
        self._placing = threading.Lock()  # tasks whose node depends on where the run's others went
        if self.nodes.engines:  # exec goes to the engine of the node where the task runs
            self.capabilities = frozenset({Capability.BUILD, Capability.INTERACTIVE_EXEC, Capability.COPY_FILES})
        self.direct_routes = False  # task addresses live on overlay networks inside the nodes

    # The Docker backend's optional abilities work on one engine's containers, not on services: refused.
    create_gated_container = Backend.create_gated_container
    release_container = Backend.release_container
    export_filesystem = Backend.export_filesystem
    image_id = Backend.image_id
    export_volume = Backend.export_volume
    import_volume = Backend.import_volume
    copy_volume = Backend.copy_volume
    rename_container = Backend.rename_container
    stop_container = Backend.stop_container
    kill_container = Backend.kill_container
    pause_container = Backend.pause_container
    unpause_container = Backend.unpause_container
    connect_network = Backend.connect_network
    disconnect_network = Backend.disconnect_network

    def ping(self) -> None:
        info = self._retried("ping", self.api.info)
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise EngineUnavailable(f"engine swarm: {self.where} is not a swarm manager "
                                    "(point DOCKER_HOST at a manager; `docker swarm init` makes one)")

    def close(self) -> None:
        for node in self._node_backends.values():
            node.close()
        super().close()

    # -- nodes ------------------------------------------------------------------------------------
    def _node_of(self, node_id: str) -> NodeInfo | None:
        return self._nodes.get(node_id)

    # -- images: built on the manager, copied to nodes that lack them --------------------------------
    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        super().build_image(spec, on_line)
        self._distribute(spec.tag)

    def image_exists(self, tag: str) -> bool:
        if not super().image_exists(tag):
            return False
        self._distribute(tag)
        return True

    def _distribute(self, tag: str) -> None:
        """Copy image ``tag`` from the manager to every known node without it (same id: skipped)."""
        want = DockerBackend.image_id(self, tag)

        def copy(node: DockerBackend) -> None:
            if node.where != self.where and node.image_id(tag) != want:
                with self._call(f"copy image {tag} to {node.where}"):
                    node.api.load_image(self.api.get_image(tag))
        self._each_node(copy)

    def remove_image(self, tag: str) -> None:
        self._each_node(lambda node: node.remove_image(tag))
        super().remove_image(tag)

    # -- networks ---------------------------------------------------------------------------------
    def create_network(self, spec: NetworkSpec) -> str:
        labels = dict(spec.labels)

        def existing() -> str | None:
            rows = self._retried("list networks", lambda: self.api.networks(names=[spec.name]))
            return next((str(n["Id"]) for n in rows if n.get("Name") == spec.name and n.get("Labels") == labels), None)

        return self._create(f"create network {spec.name}", lambda: str(self.api.create_network(
            spec.name, driver="overlay", attachable=True, labels=labels, internal=spec.internal,
            check_duplicate=True)["Id"]), existing)

    def remove_network(self, network_id: str) -> None:
        # Busy (a task's endpoint still attached) is retried by the one policy; a removal that returned is
        # completed asynchronously by the manager: poll until the network is gone.
        def attempt() -> None:
            try:
                self._once(f"remove network {network_id[:12]}", lambda: self.api.remove_network(network_id))
            except EngineError as exc:  # Swarm's 400 "network ... is in use by service ...": it ends by itself
                if "is in use by" in str(exc):
                    raise Busy(str(exc)) from exc
                raise

        try:
            retry.call(attempt)
        except NotFound:
            return
        deadline = time.monotonic() + 30
        engines: list[DockerBackend] = [self, *self._all_nodes()]  # the manager, then each node's copy
        for engine in engines:
            while time.monotonic() < deadline:
                try:
                    engine._once("inspect network", partial(engine.api.inspect_network, network_id))
                except (NotFound, EngineUnavailable):
                    break
                time.sleep(0.2)

    def remove_volume(self, name: str) -> None:
        self._each_node(lambda node: node.remove_volume(name))
        super().remove_volume(name)

    # -- services as containers -------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        binds = [m.source for m in spec.mounts if m.type == "bind"]
        if binds:
            raise Unsupported(f"engine swarm cannot mount host paths ({spec.name}: {', '.join(binds)}): "
                              "on a swarm a host path is the file system of whichever node runs the task")
        if spec.privileged:
            raise Unsupported(f"engine swarm cannot run privileged containers ({spec.name})")
        if DockerBackend.image_id(self, spec.image) is None:
            raise NotFound(f"create container {spec.name}: no such image {spec.image} on the manager")
        if self._service(spec.name) is not None:
            raise Conflict(f"create container {spec.name}: a service of that name already exists")
        self._specs[spec.name] = spec
        return spec.name

    def start_container(self, container_id: str) -> None:
        spec = self._specs.get(container_id)
        if spec is None:
            if self._service(container_id) is None:
                raise NotFound(f"start container {container_id}: no such container")
            return  # a service runs from its creation on
        placed = bool(pinned_volumes(spec)) or bool(spec.placement and (spec.placement.max_per_node or
                                                                         spec.placement.spread))
        try:
            with self._placing if placed else contextlib.nullcontext():
                self._start(spec)
        finally:  # made or not, it is the service's now (a task that failed to start is removed with it)
            del self._specs[container_id]

    def _start(self, spec: ContainerSpec) -> None:
        run = dict(spec.labels).get(L.RUN, "")
        others = self._services({L.RUN: run}) if run else []
        constraints, pinned = extra_constraints(spec, others, self._task)
        if spec.placement and spec.placement.spread and pinned is None:
            constraints += spread_constraints(spec.placement.spread, self._nodes.all().values(),
                                              [*spec.placement.constraints, *constraints],
                                              replicas_by_node(spec, others, self._task))
        if pinned is None and pinned_volumes(spec):  # the run's first task with these volumes: choose their node
            load: dict[str, int] = {}
            for t in self._retried("list tasks", lambda: self.api.tasks(filters={"desired-state": "running"})):
                load[str(t.get("NodeID", ""))] = load.get(str(t.get("NodeID", "")), 0) + 1
            own = [*(spec.placement.constraints if spec.placement else ()), *constraints]
            node = choose(self._nodes.all().values(), own, load)
            if node is not None:
                pinned = node.hostname
                constraints.append(f"node.hostname=={pinned}")
        labels = dict(spec.labels) | ({NODE_LABEL: pinned} if pinned else {})
        template, mode = wire.task_template(spec, tuple(constraints))
        ephemeral = sum(1 for p in spec.ports if p.host_port is None)
        # Tries the node's free ports in turn: a port least used over the swarm may still be taken on the
        # only node the task may run on (a constraint, a pinned volume), and then it is not tried again.
        tries = max(3, len(self.nodes.publish) // max(ephemeral, 1) + 1)
        taken: set[int] = set()
        for attempt in range(tries):
            # the ports are chosen from the services that exist: one choice at a time in this process
            with _PUBLISHING if ephemeral else contextlib.nullcontext():
                endpoint = EndpointSpec(mode="dnsrr")
                endpoint["Ports"] = host_ports(spec, self._free_ports(ephemeral, taken) if ephemeral else [])
                try:
                    self._once(f"create service {spec.name}", partial(
                        self.api.create_service, template, name=spec.name, labels=labels, mode=mode,
                        endpoint_spec=endpoint))
                except Transient as exc:  # Swarm answers 500 for a network that does not exist
                    if "not found" in str(exc):
                        raise NotFound(str(exc)) from exc
                    raise
            try:
                self._await_task(spec.name, port_taken=bool(ephemeral) and attempt < tries - 1)
                return
            except _PortTaken:  # taken on its node (or by another process at once): choose again
                taken.update(int(p["PublishedPort"]) for p in endpoint["Ports"]
                             if p["PublishedPort"] in self.nodes.publish)
                self._once(f"remove service {spec.name}", lambda: self.api.remove_service(spec.name))

    def _await_task(self, name: str, timeout: float = 120, port_taken: bool = False) -> NodeInfo | None:
        """Until the service's task runs (or already ended): its node. A task Swarm cannot place or prepare
        is an error with Swarm's reason (no node with the port free, an image missing on a node, ...);
        with ``port_taken``, a task pending only for its host ports raises ``_PortTaken`` at once."""
        deadline = time.monotonic() + timeout
        reason = ""
        while time.monotonic() < deadline:
            service = self._service(name)
            task = self._task(service) if service is not None else None
            status: dict[str, Any] = dict((task or {}).get("Status") or {})
            node = self._node_of(str((task or {}).get("NodeID", "")))
            if node is not None and not node.up and status.get("State") not in ENDED:
                raise EngineError(f"start container {name}: its Swarm task {node.lost()}")
            if status.get("State") == "running" or status.get("State") in ENDED:
                return node
            reason = str(status.get("Err") or status.get("Message") or status.get("State") or "no task yet")
            if port_taken and "host-mode port already in use" in reason:
                raise _PortTaken(reason)
            if "no suitable node" in reason and time.monotonic() > deadline - timeout + 5:
                break  # unschedulable for 5 s: Swarm retries forever, envkit says why
            time.sleep(0.1)
        raise EngineError(f"start container {name}: its Swarm task did not start: {reason}")

    def _free_ports(self, count: int, taken: Collection[int] = ()) -> list[int]:
        if count > len(self.nodes.publish):
            raise Unsupported(f"engine swarm: {count} ports to publish, ENVKIT_SWARM_PUBLISH has {len(self.nodes.publish)}")
        return least_used(self._retried("list services", self.api.services), self.nodes.publish, taken)[:count]

    def _service(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._once(f"inspect service {name}", lambda: self.api.inspect_service(name)))
        except NotFound:
            return None

    def _task(self, service: Mapping[str, Any]) -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = self._retried(
            "list tasks", lambda: [dict(t) for t in self.api.tasks(filters={"service": service["ID"]})])
        mine = [t for t in rows if t.get("ServiceID") == service["ID"]]
        return max(mine, key=lambda t: str(t.get("CreatedAt", ""))) if mine else None

    def inspect_container(self, container_id: str) -> ContainerState:
        if container_id in self._specs:
            spec = self._specs[container_id]
            return ContainerState(spec.name, spec.name, "created", None, None, {}, {}, dict(spec.labels),
                                  finished_at="", environment=dict(spec.environment), mounts=spec.mounts)
        service = self._service(container_id)
        if service is None:
            raise NotFound(f"inspect container {container_id}: no such container")
        return wire.state(self._node_of, self.nodes, service, self._task(service))

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect_container(container_id)
            if state.status == "exited":
                return state.exit_code
            if state.lost:  # it will not exit: its node is gone
                return -1
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))

    # -- exec and logs: on the node where the task runs ----------------------------------------------
    def _where(self, container_id: str, wait: float = 60) -> tuple[DockerBackend, str] | None:
        """The node engine and container id of the service's task (waiting up to ``wait`` seconds for it
        while the task is being scheduled); None before the service was started."""
        if container_id in self._specs:
            return None
        deadline = time.monotonic() + wait
        while True:
            service = self._service(container_id)
            if service is None:
                raise NotFound(f"container {container_id}: no such container")
            task = self._task(service) or {}
            status: dict[str, Any] = dict(task.get("Status") or {})
            cid = str((status.get("ContainerStatus") or {}).get("ContainerID") or "")
            if cid:
                break
            if status.get("State") in ENDED or time.monotonic() > deadline:
                raise NotFound(f"container {container_id}: its task has no container ({status.get('Err', '')})")
            time.sleep(0.1)  # scheduled, image being prepared: the container comes
        info = self._node_of(str(task.get("NodeID", "")))
        hostname = info.hostname if info is not None else "?"
        if info is not None and not info.up:
            raise Conflict(f"container {container_id}: it {info.lost()}")
        node = self._node(hostname)
        if node is None:
            raise Unsupported(f"engine swarm cannot reach the engine of node {hostname} where {container_id} "
                              "runs (set ENVKIT_SWARM_NODES=HOSTNAME=tcp://HOST:PORT,...)")
        return node, cid

    def _started(self, container_id: str, what: str) -> tuple[DockerBackend, str]:
        where = self._where(container_id)
        if where is None:
            raise Conflict(f"{what} in container {container_id}: it is not running")
        return where

    # -- discovery and removal --------------------------------------------------------------------
    def _services(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        return [dict(s) for s in self._retried("list services", lambda: self.api.services(
            filters=self._filters(labels)))]

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        return [replace(wire.state(self._node_of, self.nodes, s, self._task(s)), exit_code=None, health=None, started_at=None,
                        oom_killed=None, finished_at=None, detailed=False) for s in self._services(labels)]

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        filters = self._filters(labels)
        out = [Resource("container", s["Spec"]["Name"], s["Spec"]["Name"], s["Spec"].get("Labels") or {})
               for s in self._services(labels)]
        out += [Resource("network", n["Id"], n["Name"], n.get("Labels") or {})
                for n in self._retried("list networks", lambda: self.api.networks(filters=filters))]
        seen: set[str] = set()

        def volumes(engine: DockerBackend) -> None:
            for v in _volumes(engine, filters):
                if v["Name"] not in seen:
                    seen.add(v["Name"])
                    out.append(Resource("volume", v["Name"], v["Name"], v.get("Labels") or {}))
        volumes(self)
        self._each_node(volumes)
        return out

    def remove_container(self, container_id: str, grace: float) -> None:
        if self._specs.pop(container_id, None) is not None and self._service(container_id) is None:
            return  # never started
        try:
            where = self._where(container_id, wait=0)
        except (NotFound, Unsupported, Conflict):  # Conflict: its node is down; the manager forgets the task
            where = None
        if where is not None:  # stop within the grace asked for (not the service's own stop grace period)
            try:
                with self._reaching(where[0]):
                    where[0].remove_container(where[1], grace)
            except Conflict:  # its node went down meanwhile: the manager forgets the task
                where = None
        with contextlib.suppress(NotFound):
            self._retried(f"remove service {container_id}", lambda: self.api.remove_service(container_id))
        if where is not None:  # the task's container goes asynchronously: wait (its volumes are freed then)
            node, cid = where
            deadline = time.monotonic() + grace + 30
            while time.monotonic() < deadline:
                try:
                    node.inspect_container(cid)
                except NotFound:
                    return
                time.sleep(0.2)
            node.remove_container(cid, 0)


def _volumes(engine: DockerBackend, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    found = engine._retried("list volumes", lambda: engine.api.volumes(filters=filters))
    return [dict(v) for v in found.get("Volumes") or []]


def open_backend(environment: Mapping[str, str]) -> Backend:
    """The engine table's entry point (see ``envkit.backends.connect``)."""
    return SwarmBackend(environment)
