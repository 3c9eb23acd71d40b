"""The one interface between envkit and a container engine.

The planner and executor speak only in these terms; ``docker.py`` implements them for one Docker
engine (the only module that imports ``docker``), ``fake.py`` in memory for unit tests. A Swarm or
Kubernetes backend is one more module implementing ``Backend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Backend",
    "BuildSpec",
    "ContainerSpec",
    "ContainerState",
    "ExecResult",
    "MountSpec",
    "PortBinding",
    "Resource",
]


@dataclass(frozen=True)
class BuildSpec:
    tag: str
    context: Path
    dockerfile: str
    args: tuple[tuple[str, str], ...]
    target: str | None
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PortBinding:
    container: int
    protocol: str
    host_ip: str
    host: int | None


@dataclass(frozen=True)
class MountSpec:
    type: Literal["volume", "bind"]
    source: str  # engine volume name or absolute host path
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    labels: tuple[tuple[str, str], ...]
    networks: tuple[tuple[str, tuple[str, ...]], ...]  # (engine network name, DNS aliases)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    ports: tuple[PortBinding, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()
    memory: int | None = None
    cpus: float | None = None
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    status: str  # created | running | exited | dead | ...
    exit_code: int | None
    health: str | None  # starting | healthy | unhealthy | None (no HEALTHCHECK)
    addresses: Mapping[str, str]  # engine network name -> container IP
    ports: Mapping[str, tuple[str, int]]  # "8080/tcp" -> (host ip, host port)
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: str = ""
    oom_killed: bool = False

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


class Backend(ABC):
    """One container engine. Methods raise envkit errors (never the engine library's own)."""

    #: the host name tests use to reach published ports ("127.0.0.1" for a local engine)
    host: str = "127.0.0.1"
    #: whether this process can reach container addresses directly (a local Linux engine)
    direct_routes: bool = True

    @abstractmethod
    def ping(self) -> None: ...

    # images
    @abstractmethod
    def image_exists(self, tag: str) -> bool: ...

    @abstractmethod
    def image_healthcheck(self, tag: str) -> bool:
        """Whether the image declares its own HEALTHCHECK."""

    @abstractmethod
    def pull_image(self, tag: str) -> None: ...

    @abstractmethod
    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None: ...

    # networks, volumes
    @abstractmethod
    def create_network(self, name: str, labels: Mapping[str, str], internal: bool) -> str: ...

    @abstractmethod
    def create_volume(self, name: str, labels: Mapping[str, str]) -> str: ...

    # containers
    @abstractmethod
    def create_container(self, spec: ContainerSpec) -> str: ...

    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        """Create a container whose process waits behind a gate until ``release_container``.

        Returns the id and whether it is gated; an engine (or image) that cannot gate creates a plain
        container, which the executor then starts at release time instead."""
        return self.create_container(spec), False

    def release_container(self, container_id: str) -> None:
        """Open the gate of a container created by ``create_gated_container``."""
        raise NotImplementedError

    @abstractmethod
    def start_container(self, container_id: str) -> None: ...

    @abstractmethod
    def inspect_container(self, container_id: str) -> ContainerState: ...

    @abstractmethod
    def wait_container(self, container_id: str, timeout: float) -> int | None:
        """The exit code once the container has exited, or None after ``timeout`` seconds."""

    @abstractmethod
    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command; with ``timeout``, stop waiting after that long (exit code -1)."""

    @abstractmethod
    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str: ...

    @abstractmethod
    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]: ...

    # discovery and removal, by labels only
    @abstractmethod
    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        """Containers, networks and volumes carrying every label given (None: any value)."""

    @abstractmethod
    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]: ...

    @abstractmethod
    def remove_container(self, container_id: str, grace: float) -> None:
        """Kill (grace 0) or stop within ``grace`` seconds, then remove with its anonymous volumes.
        A container that is already gone is success."""

    @abstractmethod
    def remove_network(self, network_id: str) -> None: ...

    @abstractmethod
    def remove_volume(self, name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
