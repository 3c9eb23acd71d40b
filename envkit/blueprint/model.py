"""The typed, frozen blueprint model: what the planner reads. Built only from normalised data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from envkit.blueprint.source import Marks

__all__ = [
    "Attachment",
    "Blueprint",
    "Build",
    "Condition",
    "Dependency",
    "Key",
    "Mount",
    "NetworkDef",
    "Port",
    "Probe",
    "Service",
    "SnapshotDef",
    "VolumeDef",
]

Condition = Literal["started", "ready", "completed"]
ProbeKind = Literal["tcp", "http", "exec", "log", "healthcheck"]
#: a key path into the blueprint file, e.g. ("services", "api", "depends_on", 2); Marks turn it into line:col
Key = tuple[str | int, ...]


@dataclass(frozen=True)
class Build:
    context: Path
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None


@dataclass(frozen=True)
class Port:
    container: int
    protocol: str = "tcp"
    host_ip: str = "127.0.0.1"
    host: int | None = None  # None: an ephemeral port chosen by the engine
    at: Key = field(default=(), compare=False)  # where the item stands in the file; not part of equality

    @property
    def key(self) -> str:
        return f"{self.container}/{self.protocol}"


@dataclass(frozen=True)
class Mount:
    type: Literal["volume", "bind"]
    source: str  # volume name (blueprint-level) or absolute host path
    target: str
    read_only: bool = False
    at: Key = field(default=(), compare=False)  # where the item stands in the file; not part of equality


@dataclass(frozen=True)
class Dependency:
    service: str
    condition: Condition = "ready"
    at: Key = field(default=(), compare=False)  # where the item stands in the file; not part of equality


@dataclass(frozen=True)
class Attachment:
    """A service's place on one network: the network and extra DNS aliases there."""

    network: str
    aliases: tuple[str, ...] = ()
    at: Key = field(default=(), compare=False)  # where the item stands in the file; not part of equality


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    timeout: float = 60.0
    port: int | None = None  # tcp, http
    path: str = "/"  # http
    status: int | None = None  # http: None means any 2xx/3xx
    body: str | None = None  # http: regex the body must match
    command: tuple[str, ...] = ()  # exec
    pattern: str | None = None  # log: regex on the output

    def describe(self) -> str:
        if self.kind == "tcp":
            return f"tcp {self.port}"
        if self.kind == "http":
            return f"http {self.port}{self.path}" + (f" -> {self.status}" if self.status else "")
        if self.kind == "exec":
            return "exec " + " ".join(self.command)
        if self.kind == "log":
            return f"log /{self.pattern}/"
        return "healthcheck"


ResetPath = Literal["auto", "template", "restore"]


@dataclass(frozen=True)
class SnapshotDef:
    """``snapshot:`` of a service: capture its seeded state once, start later runs from it (docs/snapshots.md).
    ``reset``: how ``envkit reset`` puts it back — PostgreSQL template databases, a restore from the
    snapshot, or ``auto`` (templates where the container has ``psql``)."""

    reset: ResetPath = "auto"
    at: Key = field(default=(), compare=False)


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: Build | None
    kind: Literal["service", "job"] = "service"
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    working_dir: str | None = None
    networks: tuple[Attachment, ...] = ()
    ports: tuple[Port, ...] = ()
    volumes: tuple[Mount, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()  # (path, mount options)
    labels: tuple[tuple[str, str], ...] = ()
    memory: int | None = None  # bytes
    cpus: float | None = None
    replicas: int = 1
    depends_on: tuple[Dependency, ...] = ()
    ready: Probe | None = None
    stop_grace_period: float = 0.0  # 0: killed at teardown, the fast default for ephemeral runs
    stop_signal: str | None = None
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    hostname: str | None = None
    prestart: bool = True  # start the container early behind a gate (needs /bin/sh in the image)
    snapshot: SnapshotDef | None = None  # None: started fresh (and seeded) in every run

    @property
    def network_names(self) -> tuple[str, ...]:
        return tuple(a.network for a in self.networks)

    def port(self, container_port: int, protocol: str = "tcp") -> Port | None:
        return next((p for p in self.ports if p.container == container_port and p.protocol == protocol), None)


@dataclass(frozen=True)
class NetworkDef:
    name: str
    internal: bool = False
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VolumeDef:
    name: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Blueprint:
    name: str
    file: Path
    directory: Path
    services: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)
    outputs: tuple[tuple[str, str], ...] = ()
    #: where each key path stands in the file, for errors found after loading (capability checks)
    marks: Marks = field(default_factory=lambda: Marks(""), compare=False, repr=False)

    def closure(self, roots: tuple[str, ...]) -> tuple[str, ...]:
        """The named services and everything they depend on, transitively (sorted)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(d.service for d in self.services[name].depends_on)
        return tuple(sorted(seen))
