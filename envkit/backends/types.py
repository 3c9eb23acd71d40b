"""The plain data the backend interface exchanges: specs of what to make, states of what is there.
Engine-neutral and frozen; ``envkit.backends.base`` re-exports every name (import them from there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

__all__ = [
    "BuildSpec",
    "ContainerSpec",
    "ContainerState",
    "ContainerStatus",
    "Endpoint",
    "ExecResult",
    "ImageInfo",
    "Labels",
    "LogLine",
    "MountSpec",
    "NetworkAttachment",
    "NetworkSpec",
    "Placement",
    "PortBinding",
    "PortKey",
    "Protocol",
    "Resource",
    "VolumeSpec",
]

Protocol = Literal["tcp", "udp"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, order=True)
class PortKey:
    """A container port: ``PortKey(8080)`` is 8080/tcp. Printed as ``8080/tcp``."""

    number: int
    protocol: Protocol = "tcp"

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"

    @classmethod
    def parse(cls, text: str) -> PortKey:
        """``"8080"`` or ``"8080/udp"`` (raises ValueError otherwise)."""
        number, _, protocol = text.partition("/")
        protocol = protocol or "tcp"
        if protocol not in ("tcp", "udp") or not number.isdigit():
            raise ValueError(f"not a port: {text!r}")
        return cls(int(number), protocol)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Endpoint:
    """Where a published port is bound on the engine's side: the host address and port."""

    host_ip: str
    port: int


@dataclass(frozen=True)
class PortBinding:
    """A port to publish: the container port, the host address to bind, and a host port (None: ephemeral)."""

    container: PortKey
    host_ip: str = "127.0.0.1"
    host_port: int | None = None


@dataclass(frozen=True)
class BuildSpec:
    tag: str
    context: Path
    dockerfile: str
    args: Labels
    target: str | None
    labels: Labels


@dataclass(frozen=True)
class NetworkSpec:
    """A private network of a run. The engine chooses the driver (a bridge on one Docker engine, an
    attachable overlay on Swarm, a namespace's network policy on Kubernetes)."""

    name: str
    labels: Labels = ()
    internal: bool = False  # no route out of the network


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    labels: Labels = ()


@dataclass(frozen=True)
class MountSpec:
    type: Literal["volume", "bind"]
    source: str  # engine volume name or absolute host path
    target: str
    read_only: bool


@dataclass(frozen=True)
class NetworkAttachment:
    network: str  # engine network name
    aliases: tuple[str, ...] = ()  # DNS names of the container on that network
    #: a fixed IPv4 address on that network (None: the engine's choice). A reset keeps a service's
    #: address this way (``envkit.restore``); an engine that cannot fix one refuses it at start. The engine
    #: holds it for the container only while it runs: ``start_container`` of one whose address another
    #: container took meanwhile gives it the engine's choice on that network instead.
    address: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where a distributed engine may run a service's replicas (the blueprint's ``placement:``); one
    engine is one node, where it has no effect."""

    constraints: tuple[str, ...] = ()  # "node.labels.zone==a": every one must hold
    max_per_node: int | None = None  # replicas of the service on one node
    spread: tuple[str, ...] = ()  # "node.labels.zone": replicas spread evenly over its values, in order


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    labels: Labels
    networks: tuple[NetworkAttachment, ...]
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Labels = ()
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    ports: tuple[PortBinding, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    tmpfs: Labels = ()  # (path, mount options)
    memory: int | None = None  # bytes
    cpus: float | None = None
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None
    #: "container:<id>": join that container's network namespace (``networks`` and ``ports`` then empty);
    #: a helper beside a service (envkit/faults): needs Capability.SHARED_NETNS
    network_mode: str | None = None
    cap_drop: tuple[str, ...] = ()
    read_only: bool = False
    init: bool = False  # the engine's init (tini) as PID 1 (no effect on Kubernetes: docs/kubernetes.md)
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard); -1 unlimited (none on Kubernetes)
    placement: Placement | None = None  # a distributed engine's placement (docs/swarm.md); one engine: none
    healthcheck_off: bool = False  # the image's HEALTHCHECK is not run (``ready: {healthcheck: false}``)


ContainerStatus = Literal["created", "running", "paused", "restarting", "exited", "dead", "removing", "unknown"]


@dataclass(frozen=True)
class ContainerState:
    """What the engine says of one container. The one state type, from an inspection or a listing.

    ``None`` in ``exit_code``, ``health``, ``started_at``, ``finished_at`` or ``oom_killed`` means *unknown* when
    ``detailed`` is False (a listing that does not carry them: inspect the container to know), and
    *none* when it is True (running: no exit code; no HEALTHCHECK: no health).
    """

    id: str
    name: str
    status: ContainerStatus
    exit_code: int | None
    health: Literal["starting", "healthy", "unhealthy"] | None
    addresses: Mapping[str, str]  # engine network name -> container address
    ports: Mapping[PortKey, Endpoint]  # published ports (empty unless running)
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: str | None = None
    oom_killed: bool | None = None
    detailed: bool = True
    finished_at: str | None = None  # when it last exited (RFC 3339); "" if it never did
    #: the process's environment (inspection only): where a secret is read back from (envkit.secrets)
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: what is mounted (detailed only): named and anonymous volumes (source: the engine's volume name),
    #: binds (source: the host path); in-memory mounts are left out
    mounts: tuple[MountSpec, ...] = ()
    #: engine network name -> the container's DNS aliases there (detailed only; engine-made ids left out)
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    #: why the engine lost it without an exit (a distributed engine's node went down): "was lost with
    #: node rig-node3 (down)"; status is then "dead"
    lost: str | None = None
    #: the host ports it was created to publish on (detailed only; a port the engine chooses at each start is
    #: left out): what a replacement keeps when the container publishes none right now (stopped, off its networks)
    bindings: Mapping[PortKey, Endpoint] = field(default_factory=dict, compare=False)
    #: engine network name -> the address it was made (or connected) to have there, fixed (detailed only; a
    #: reset fixes its replacement's, ``envkit.restore``): kept while it is stopped, when ``addresses`` is empty
    fixed: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Resource:
    kind: Literal["container", "network", "volume"]
    id: str
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class LogLine:
    """One line a container printed, with the time the engine received it (UTC)."""

    at: datetime
    text: str  # without its line break


@dataclass(frozen=True)
class ImageInfo:
    """An image on the engine: its id, its tags (``repository:tag``), labels, creation time (UTC), size
    in bytes (shared layers counted in full), and how many containers (of any tool, in any state) use it."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: datetime
    size: int
    containers: int
