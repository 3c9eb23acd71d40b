"""The core of the in-memory engine: images, networks, volumes, containers, gate, discovery, removal.
The optional capabilities are added in ``fake.py``, the module tests import."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from envkit import labels as L
from envkit.backends import _tar
from envkit.backends.base import (
    Backend,
    BuildSpec,
    Capability,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    Endpoint,
    ExecResult,
    ImageInfo,
    LogLine,
    NetworkAttachment,
    NetworkSpec,
    PortKey,
    Resource,
    VolumeSpec,
)
from envkit.errors import Busy, Conflict, EngineError, NotFound, PortBusy

__all__ = ["SIGNALS", "Container", "FakeEngine", "Network", "Volume", "matches"]

T = TypeVar("T")
SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15}


def matches(labels: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    """Docker's label filter: every ``key`` must be present, every ``key=value`` must be equal."""
    return all(key in labels and (value is None or labels[key] == value) for key, value in wanted.items())


@dataclass
class Container:
    id: str
    spec: ContainerSpec
    ip: str
    files: _tar.Files
    networks: list[NetworkAttachment]
    status: ContainerStatus = "created"
    exit_code: int | None = None
    health: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    ports: dict[PortKey, Endpoint] = field(default_factory=dict)
    gated: bool = False  # running its gate: the service's own process has not begun yet
    began: bool = False  # the service's own process has begun (its logs exist)
    began_at: datetime | None = None  # when it first began: the time of its ``log_text`` lines
    printed: list[LogLine] = field(default_factory=list)  # lines given to ``emit``

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.labels)


@dataclass
class Network:
    id: str
    spec: NetworkSpec


@dataclass
class Volume:
    spec: VolumeSpec
    files: _tar.Files = field(default_factory=dict)


class FakeEngine(Backend):
    """The core of the fake: everything but the optional capabilities (see ``fake.FakeBackend``)."""

    name = "fake"
    host = "127.0.0.1"
    direct_routes = False

    def __init__(self, images: Iterable[str] = (), capabilities: Iterable[Capability] | None = None) -> None:
        self.capabilities = frozenset(Capability) if capabilities is None else frozenset(capabilities)
        self.images: set[str] = set(images)
        self.image_labels: dict[str, dict[str, str]] = {}  # image tag -> labels (a build's)
        self.image_created: dict[str, datetime] = {}  # image tag -> when it was built or pulled
        self.exit_codes: dict[str, int] = {}  # name or service -> exits with this code on start
        self.health: dict[str, str] = {}  # name or service -> health status once started
        self.log_text: dict[str, str] = {}  # name or service -> what logs() returns once its process began
        self.exec_results: dict[str, ExecResult] = {}  # name or service -> what exec() returns
        self.build_failures: dict[str, str] = {}  # image tag -> reason its build (or pull) fails
        self.no_shell: set[str] = set()  # image tags without /bin/sh: not gated
        self.busy_ports: set[tuple[str, int]] = set()  # (host ip, port) another program listens on
        self.remote = False  # True: like a remote Docker engine, unpinned host ports are chosen anew at each start
        self.calls: list[tuple[str, str]] = []
        self.containers: dict[str, Container] = {}
        self.networks: dict[str, Network] = {}
        self.volumes: dict[str, Volume] = {}
        self.image_files: dict[str, _tar.Files] = {}  # images made by export_filesystem -> their files
        self.image_ids: dict[str, str] = {}  # tag -> id, to change what a tag holds (default: from the tag)
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
                target = self.networks[target].spec.name
            self.calls.append((method, target))

    def _container(self, ident: str) -> Container:
        found = self.containers.get(ident) or next((c for c in self.containers.values() if c.spec.name == ident), None)
        if found is None:
            raise NotFound(f"no such container: {ident}")
        return found

    def _network(self, name: str) -> Network:
        found = self.networks.get(name) or next((n for n in self.networks.values() if n.spec.name == name), None)
        if found is None:
            raise NotFound(f"network {name} not found")
        return found

    def _volume(self, name: str) -> Volume:
        if name not in self.volumes:
            raise NotFound(f"no such volume: {name}")
        return self.volumes[name]

    @staticmethod
    def _setting(table: Mapping[str, T], c: Container) -> T | None:
        if c.spec.name in table:
            return table[c.spec.name]
        return table.get(c.labels.get(L.SERVICE, ""))

    @staticmethod
    def _bound(c: Container) -> dict[PortKey, Endpoint]:
        """Like the Docker backend: a container never started shows the host ports chosen at its create."""
        if c.status != "created":
            return {}
        return {p.container: Endpoint(p.host_ip, p.host_port) for p in c.spec.ports if p.host_port}

    def _state(self, c: Container, detailed: bool = True) -> ContainerState:
        live = c.status in ("running", "paused")
        health = c.health if c.health in ("starting", "healthy", "unhealthy") else None
        return ContainerState(
            id=c.id, name=c.spec.name, status=c.status,
            exit_code=c.exit_code if detailed and c.status in ("exited", "dead") else None,
            health=health if detailed and live else None,  # type: ignore[arg-type]
            addresses={a.network: c.ip for a in c.networks} if live else {},
            ports=dict(c.ports) if live else self._bound(c), labels=c.labels,
            started_at=(c.started_at or "") if detailed else None,
            finished_at=(c.finished_at or "") if detailed else None, oom_killed=False if detailed else None,
            detailed=detailed, environment=dict(c.spec.environment) if detailed else {},
            mounts=tuple(sorted(c.spec.mounts, key=lambda m: m.target)) if detailed else (),
            aliases={a.network: a.aliases for a in c.networks} if live and detailed else {},
            bindings={p.container: Endpoint(p.host_ip, p.host_port) for p in c.spec.ports if p.host_port}
            if detailed else {},
            fixed={a.network: a.address for a in c.networks if a.address} if detailed else {},
        )

    # -- engine -------------------------------------------------------------------------------------
    def ping(self) -> None:
        self._record("ping", "")

    def image_exists(self, tag: str) -> bool:
        self._record("image_exists", tag)
        with self._changed:
            return tag in self.images

    def pull_image(self, tag: str) -> None:
        self._record("pull_image", tag)
        if tag in self.build_failures:
            raise EngineError(self.build_failures[tag])
        with self._changed:
            self.images.add(tag)
            self.image_created[tag] = datetime.now(UTC)

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        self._record("build_image", spec.tag)
        on_line(f"building {spec.tag} from {spec.context.name}/{spec.dockerfile}")
        if spec.tag in self.build_failures:
            on_line(f"error: {self.build_failures[spec.tag]}")
            raise EngineError(self.build_failures[spec.tag])
        with self._changed:
            self.images.add(spec.tag)
            self.image_labels[spec.tag] = dict(spec.labels)
            self.image_created[spec.tag] = datetime.now(UTC)

    def list_images(self, labels: Mapping[str, str | None]) -> list[ImageInfo]:
        """Each tag is an image of its own here (Docker groups the tags of one image id)."""
        self._record("list_images", ",".join(k if v is None else f"{k}={v}" for k, v in labels.items()))
        with self._changed:
            return [ImageInfo(f"sha256:{tag}", (tag,), dict(self.image_labels.get(tag, {})),
                              self.image_created.get(tag, datetime.fromtimestamp(0, UTC)), 1000,
                              sum(c.spec.image == tag for c in self.containers.values()))
                    for tag in sorted(self.images) if matches(self.image_labels.get(tag, {}), labels)]

    def remove_image(self, tag: str) -> None:
        self._record("remove_image", tag)
        with self._changed:
            if any(c.spec.image == tag for c in self.containers.values()):
                raise Conflict(f"image {tag} is used by a container")
            self.images.discard(tag)
            self.image_files.pop(tag, None)
            self.image_labels.pop(tag, None)
            self.image_created.pop(tag, None)

    def create_network(self, spec: NetworkSpec) -> str:
        self._record("create_network", spec.name)
        with self._changed:
            if any(n.spec.name == spec.name for n in self.networks.values()):
                raise Conflict(f"network with name {spec.name} already exists")
            ident = f"net-{next(self._ids)}"
            self.networks[ident] = Network(ident, spec)
            return ident

    def create_volume(self, spec: VolumeSpec) -> str:
        self._record("create_volume", spec.name)
        with self._changed:
            self.volumes.setdefault(spec.name, Volume(spec))  # like Docker: an existing volume is returned as is
        return spec.name

    def create_container(self, spec: ContainerSpec) -> str:
        self._record("create_container", spec.name)
        with self._changed:
            if any(c.spec.name == spec.name for c in self.containers.values()):
                raise Conflict(f'the container name "{spec.name}" is already in use')
            if spec.image not in self.images:
                raise NotFound(f"no such image: {spec.image}")
            for attachment in spec.networks:
                self._network(attachment.network)
            # Like the Docker backend: the host ports are chosen at create, so they last the container's life.
            if not self.remote:
                spec = replace(spec, ports=tuple(p if p.host_port else replace(p, host_port=next(self._host_ports))
                                                 for p in spec.ports))
            serial = next(self._ids)
            ident = f"ctr-{serial}"
            fixed = next((a.address for a in spec.networks if a.address), None)  # one address on every network here
            self.containers[ident] = Container(ident, spec, ip=fixed or f"10.89.{serial // 250}.{serial % 250 + 2}",
                                                files=dict(self.image_files.get(spec.image, {})),
                                                networks=list(spec.networks))
            return ident

    def start_container(self, container_id: str) -> None:
        self._record("start_container", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status in ("running", "paused"):
                return  # like Docker: starting a running container changes nothing
            taken = {(e.host_ip, e.port) for o in self.containers.values() if o.status in ("running", "paused")
                     for e in o.ports.values()} | self.busy_ports
            for p in c.spec.ports:
                if p.host_port and ((p.host_ip, p.host_port) in taken or ("0.0.0.0", p.host_port) in taken):
                    raise PortBusy(f"Bind for {p.host_ip}:{p.host_port} failed: port is already allocated",
                                   p.host_ip, p.host_port)
            c.started_at = datetime.now(UTC).isoformat()
            for p in c.spec.ports:
                c.ports[p.container] = Endpoint(p.host_ip, p.host_port or next(self._host_ports))
            if c.gated:
                c.status = "running"  # the gate runs; the service's process waits for its release
                self._changed.notify_all()
                return
            self._run_process(c)

    def _run_process(self, c: Container) -> None:
        """The service's own process begins (caller holds the lock): it runs, or exits at once."""
        c.began = True
        c.began_at = c.began_at or datetime.now(UTC)
        code = self._setting(self.exit_codes, c)
        if code is None:
            c.status, c.exit_code = "running", None
            c.health = None if c.spec.healthcheck_off else self._setting(self.health, c)
        else:
            self._exit(c, code)
        self._changed.notify_all()

    def _exit(self, c: Container, code: int) -> None:
        c.status, c.exit_code, c.gated = "exited", code, False
        c.finished_at = datetime.now(UTC).isoformat()
        c.ports.clear()
        self._changed.notify_all()

    def exit_container(self, container_id: str, exit_code: int) -> None:
        """Not an engine call: make a container's process end, as a test's way to crash a service."""
        with self._changed:
            self._exit(self._container(container_id), exit_code)

    def inspect_container(self, container_id: str) -> ContainerState:
        self._record("inspect_container", container_id)
        with self._changed:
            return self._state(self._container(container_id))

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        self._record("wait_container", container_id)
        with self._changed:
            c = self._container(container_id)
            self._changed.wait_for(lambda: c.status in ("exited", "dead") or c.id not in self.containers, timeout)
            if c.id not in self.containers:
                raise NotFound(f"container {c.spec.name} was removed")
            return c.exit_code if c.status in ("exited", "dead") else None

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        self._record("exec", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status != "running":
                raise Conflict(f"container {c.spec.name} is not running")
            return self._setting(self.exec_results, c) or ExecResult(0, "")

    def emit(self, container_id: str, text: str) -> None:
        """Not an engine call: the container prints ``text`` (one or more lines) now."""
        with self._changed:
            c = self._container(container_id)
            now = datetime.now(UTC)
            c.printed.extend(LogLine(now, line) for line in text.splitlines())

    def _lines(self, c: Container) -> list[LogLine]:
        """Its ``log_text`` (stamped a microsecond apart from when its process began), then what it printed."""
        if not c.began:
            return []
        began = c.began_at or datetime.now(UTC)
        static = (self._setting(self.log_text, c) or "").splitlines()
        lines = [LogLine(began + timedelta(microseconds=i), text) for i, text in enumerate(static)]
        return sorted(lines + c.printed, key=lambda line: line.at)

    def log_lines(self, container_id: str, tail: int | None = None, since: float | None = None,
                  until: float | None = None) -> list[LogLine]:
        self._record("log_lines", container_id)
        with self._changed:
            lines = self._lines(self._container(container_id))
        lines = [line for line in lines if (since is None or line.at.timestamp() >= since)
                 and (until is None or line.at.timestamp() < until)]
        if tail is None:
            return lines
        return lines[-tail:] if tail > 0 else []

    def follow_log_lines(self, container_id: str, tail: int | None = None,
                         since: float | None = None) -> Iterator[LogLine]:
        yield from self.log_lines(container_id, tail, since)

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        self._record("logs", container_id)
        with self._changed:
            c = self._container(container_id)
            if not c.printed and since is None and until is None:
                text = (self._setting(self.log_text, c) or "") if c.began else ""  # as given, line breaks and all
                if tail is None:
                    return text
                return "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        return "".join(f"{line.text}\n" for line in self.log_lines(container_id, tail, since, until))

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
                + [Resource("network", n.id, n.spec.name, dict(n.spec.labels)) for n in self.networks.values()
                   if matches(dict(n.spec.labels), labels)]
                + [Resource("volume", name, name, dict(v.spec.labels)) for name, v in self.volumes.items()
                   if matches(dict(v.spec.labels), labels)]
            )

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        """Like Docker's listing: no exit code, health, start time or OOM flag (``detailed=False``)."""
        self._record("list_containers", ",".join(k if v is None else f"{k}={v}" for k, v in labels.items()))
        with self._changed:
            return [self._state(c, detailed=False) for c in self.containers.values() if matches(c.labels, labels)]

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
            users = [c.spec.name for c in self.containers.values()
                     if any(a.network == network.spec.name for a in c.networks)]
            if users:
                raise Busy(f"network {network.spec.name} has active endpoints ({', '.join(users)})")
            del self.networks[network_id]

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        with self._changed:
            users = [c.spec.name for c in self.containers.values()
                     if any(m.type == "volume" and m.source == name for m in c.spec.mounts)]
            if users:
                raise Busy(f"volume {name} is in use ({', '.join(users)})")
            self.volumes.pop(name, None)

    # -- GATE -----------------------------------------------------------------------------------------
    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        """Gated like the Docker backend, unless the image is listed in ``no_shell`` or the root file
        system is read-only."""
        self.require(Capability.GATE)
        container_id = self.create_container(spec)
        if spec.image in self.no_shell or spec.read_only:
            return container_id, False
        with self._changed:
            self.containers[container_id].gated = True
        self._record("gate", container_id)
        return container_id, True

    def release_container(self, container_id: str) -> None:
        self.require(Capability.GATE)
        self._record("release_container", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status != "running":
                raise Conflict(f"container {c.spec.name} is not running")
            if c.gated:  # like Docker: releasing a container that is not gated (any more) changes nothing
                c.gated = False
                self._run_process(c)

