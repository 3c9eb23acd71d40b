"""An in-memory engine for unit tests: the planner, executor and teardown run against it without Docker.

It behaves like a small, obedient Docker: containers need their image and networks to exist, start
makes them ``running`` (or ``exited`` with a chosen code, so jobs complete or fail), networks and
volumes in use cannot be removed, removals of what is already gone succeed, and label filters match
like ``docker ps --filter label=key[=value]``. Every call is recorded, in order, in ``calls`` as
``(method, name)`` — the resource's name where one is known — so tests can assert ordering.

Behaviour is configured through plain attributes, per container name or per service name
(the ``io.envkit.service`` label)::

    fake = FakeBackend(images={"postgres:16"})
    fake.exit_codes["migrate"] = 0          # the migrate job exits 0 as soon as it starts
    fake.build_failures["envkit/shop-app:1"] = "COPY failed"
    fake.log_text["api"] = "listening on :8080\\n"
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from envkit import labels as L
from envkit.backends.base import Backend, BuildSpec, ContainerSpec, ContainerState, ExecResult, Resource
from envkit.errors import EngineError

__all__ = ["FakeBackend", "matches"]

T = TypeVar("T")


def matches(labels: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    """Docker's label filter: every ``key`` must be present, every ``key=value`` must be equal."""
    return all(key in labels and (value is None or labels[key] == value) for key, value in wanted.items())


@dataclass
class _Container:
    id: str
    spec: ContainerSpec
    ip: str
    status: str = "created"
    exit_code: int | None = None
    health: str | None = None
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    gated: bool = False  # running its gate: the service's own process has not begun yet

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.labels)


@dataclass
class _Network:
    id: str
    name: str
    labels: dict[str, str]
    internal: bool


class FakeBackend(Backend):
    host = "127.0.0.1"
    direct_routes = False

    def __init__(self, images: Iterable[str] = ()) -> None:
        self.images: set[str] = set(images)
        self.exit_codes: dict[str, int] = {}  # name or service -> exits with this code on start
        self.health: dict[str, str] = {}  # name or service -> health status once started
        self.log_text: dict[str, str] = {}  # name or service -> what logs() returns
        self.exec_results: dict[str, ExecResult] = {}  # name or service -> what exec() returns
        self.build_failures: dict[str, str] = {}  # image tag -> reason its build (or pull) fails
        self.healthchecks: set[str] = set()  # image tags that declare a HEALTHCHECK
        self.no_shell: set[str] = set()  # image tags without /bin/sh: not gated
        self.calls: list[tuple[str, str]] = []
        self.containers: dict[str, _Container] = {}
        self.networks: dict[str, _Network] = {}
        self.volumes: dict[str, dict[str, str]] = {}  # name -> labels
        self._ids = itertools.count(1)
        self._host_ports = itertools.count(49153)
        self._changed = threading.Condition()  # guards everything above; notified when a container changes

    # -- helpers ------------------------------------------------------------------------------------
    def _record(self, method: str, target: str) -> None:
        """Log a call under the name of what it touches (ids of containers and networks are translated)."""
        with self._changed:
            if target in self.containers:
                target = self.containers[target].spec.name
            elif target in self.networks:
                target = self.networks[target].name
            self.calls.append((method, target))

    def _container(self, ident: str, what: str) -> _Container:
        found = self.containers.get(ident) or next((c for c in self.containers.values() if c.spec.name == ident), None)
        if found is None:
            raise EngineError(f"{what} {ident}: No such container")
        return found

    @staticmethod
    def _setting(table: Mapping[str, T], c: _Container) -> T | None:
        if c.spec.name in table:
            return table[c.spec.name]
        return table.get(c.labels.get(L.SERVICE, ""))

    def _state(self, c: _Container) -> ContainerState:
        running = c.status == "running"
        addresses = {net: c.ip for net, _ in c.spec.networks}
        return ContainerState(
            id=c.id, name=c.spec.name, status=c.status, exit_code=c.exit_code, health=c.health,
            addresses=addresses if running else {}, ports=dict(c.ports) if running else {}, labels=c.labels,
        )

    # -- engine -------------------------------------------------------------------------------------
    def ping(self) -> None:
        self._record("ping", "")

    def image_exists(self, tag: str) -> bool:
        self._record("image_exists", tag)
        with self._changed:
            return tag in self.images

    def image_healthcheck(self, tag: str) -> bool:
        self._record("image_healthcheck", tag)
        return tag in self.healthchecks

    def pull_image(self, tag: str) -> None:
        self._record("pull_image", tag)
        if tag in self.build_failures:
            raise EngineError(f"pull image {tag}: {self.build_failures[tag]}")
        with self._changed:
            self.images.add(tag)

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        self._record("build_image", spec.tag)
        on_line(f"building {spec.tag} from {spec.context.name}/{spec.dockerfile}")
        if spec.tag in self.build_failures:
            on_line(f"error: {self.build_failures[spec.tag]}")
            raise EngineError(f"build image {spec.tag}: {self.build_failures[spec.tag]}")
        with self._changed:
            self.images.add(spec.tag)

    def create_network(self, name: str, labels: Mapping[str, str], internal: bool) -> str:
        self._record("create_network", name)
        with self._changed:
            if any(n.name == name for n in self.networks.values()):
                raise EngineError(f"create network {name}: network with name {name} already exists")
            ident = f"net-{next(self._ids)}"
            self.networks[ident] = _Network(ident, name, dict(labels), internal)
            return ident

    def create_volume(self, name: str, labels: Mapping[str, str]) -> str:
        self._record("create_volume", name)
        with self._changed:
            self.volumes.setdefault(name, dict(labels))  # like Docker: an existing volume is returned as is
        return name

    def create_container(self, spec: ContainerSpec) -> str:
        self._record("create_container", spec.name)
        with self._changed:
            if any(c.spec.name == spec.name for c in self.containers.values()):
                raise EngineError(f"create container {spec.name}: Conflict. The name is already in use")
            if spec.image not in self.images:
                raise EngineError(f"create container {spec.name}: No such image: {spec.image}")
            known = {n.name for n in self.networks.values()}
            missing = [net for net, _ in spec.networks if net not in known]
            if missing:
                raise EngineError(f"create container {spec.name}: network {missing[0]} not found")
            serial = next(self._ids)
            ident = f"ctr-{serial}"
            self.containers[ident] = _Container(ident, spec, ip=f"10.89.{serial // 250}.{serial % 250 + 2}")
            return ident

    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        """Gated like the Docker backend, unless the image is listed in ``no_shell``."""
        container_id = self.create_container(spec)
        if spec.image in self.no_shell:
            return container_id, False
        with self._changed:
            self.containers[container_id].gated = True
        self._record("gate", container_id)
        return container_id, True

    def release_container(self, container_id: str) -> None:
        self._record("release_container", container_id)
        with self._changed:
            c = self._container(container_id, "release container")
            if c.status != "running" or not c.gated:
                raise EngineError(f"release container {c.spec.name}: container is not running behind its gate")
            c.gated = False
            self._run_process(c)

    def start_container(self, container_id: str) -> None:
        self._record("start_container", container_id)
        with self._changed:
            c = self._container(container_id, "start container")
            for p in c.spec.ports:
                c.ports[f"{p.container}/{p.protocol}"] = (p.host_ip, p.host or next(self._host_ports))
            if c.gated:
                c.status = "running"  # the gate runs; the service's process waits for its release
                self._changed.notify_all()
                return
            self._run_process(c)

    def _run_process(self, c: _Container) -> None:
        """The service's own process begins (caller holds the lock): it runs, or exits at once."""
        code = self._setting(self.exit_codes, c)
        if code is None:
            c.status, c.exit_code = "running", None
            c.health = self._setting(self.health, c)
        else:
            c.status, c.exit_code = "exited", code
        self._changed.notify_all()

    def exit_container(self, container_id: str, exit_code: int) -> None:
        """Not an engine call: make a container's process end, as a test's way to crash a service."""
        with self._changed:
            c = self._container(container_id, "exit container")
            c.status, c.exit_code = "exited", exit_code
            self._changed.notify_all()

    def inspect_container(self, container_id: str) -> ContainerState:
        self._record("inspect_container", container_id)
        with self._changed:
            return self._state(self._container(container_id, "inspect container"))

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        self._record("wait_container", container_id)
        with self._changed:
            c = self._container(container_id, "wait for container")
            self._changed.wait_for(lambda: c.status in ("exited", "dead") or c.id not in self.containers, timeout)
            if c.id not in self.containers:
                raise EngineError(f"wait for container {c.spec.name}: container was removed")
            return c.exit_code if c.status in ("exited", "dead") else None

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        self._record("exec", container_id)
        with self._changed:
            c = self._container(container_id, "exec in container")
            if c.status != "running":
                raise EngineError(f"exec in container {c.spec.name}: container is not running")
            return self._setting(self.exec_results, c) or ExecResult(0, "")

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        self._record("logs", container_id)
        with self._changed:
            text = self._setting(self.log_text, self._container(container_id, "logs of container")) or ""
        if tail is None:
            return text
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""

    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]:
        text = self.logs(container_id, tail)
        if text:
            yield text

    # -- discovery and removal ----------------------------------------------------------------------
    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        self._record("list_resources", ",".join(k if v is None else f"{k}={v}" for k, v in labels.items()))
        with self._changed:
            return (
                [Resource("container", c.id, c.spec.name, c.labels) for c in self.containers.values()
                 if matches(c.labels, labels)]
                + [Resource("network", n.id, n.name, dict(n.labels)) for n in self.networks.values()
                   if matches(n.labels, labels)]
                + [Resource("volume", name, name, dict(lab)) for name, lab in self.volumes.items() if matches(lab, labels)]
            )

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        self._record("list_containers", ",".join(k if v is None else f"{k}={v}" for k, v in labels.items()))
        with self._changed:
            return [self._state(c) for c in self.containers.values() if matches(c.labels, labels)]

    def remove_container(self, container_id: str, grace: float) -> None:
        self._record("remove_container", container_id)
        with self._changed:
            found = self.containers.pop(container_id, None)
            if found is not None:
                self._changed.notify_all()  # a wait_container() on it returns

    def remove_network(self, network_id: str) -> None:
        self._record("remove_network", network_id)
        with self._changed:
            network = self.networks.get(network_id)
            if network is None:
                return
            users = [c.spec.name for c in self.containers.values() if network.name in dict(c.spec.networks)]
            if users:
                raise EngineError(f"remove network {network.name}: has active endpoints ({', '.join(users)})")
            del self.networks[network_id]

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        with self._changed:
            users = [c.spec.name for c in self.containers.values()
                     if any(m.type == "volume" and m.source == name for m in c.spec.mounts)]
            if users:
                raise EngineError(f"remove volume {name}: volume is in use ({', '.join(users)})")
            self.volumes.pop(name, None)
