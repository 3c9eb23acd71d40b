"""The one interface between envkit and a container engine, in engine-neutral terms.

The planner and executor speak only in these terms; ``docker.py`` implements them for one Docker
engine (the only module that imports ``docker``), ``fake.py`` in memory for unit tests. A Swarm or
Kubernetes backend is one more module implementing ``Backend``.

Every backend implements the core methods. What not every engine can do is an optional
**capability**: a backend lists the ones it has in ``capabilities`` and implements their methods;
the others raise ``Unsupported``. The planner checks a blueprint's needs against ``capabilities``
before anything is created (``envkit.capabilities``), so a missing one is refused early with the key
and the engine named, never discovered half-way through ``up``.

Errors: methods raise envkit errors only, by kind (``NotFound``, ``Conflict``, ``Busy``, ``Transient``,
other ``EngineError``), translated once inside the backend. Removing what is already gone succeeds.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import BinaryIO

from envkit.backends.types import (
    BuildSpec,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    Endpoint,
    ExecResult,
    ImageInfo,
    LogLine,
    MountSpec,
    NetworkAttachment,
    NetworkSpec,
    Placement,
    PortBinding,
    PortKey,
    Protocol,
    Resource,
    VolumeSpec,
)
from envkit.errors import Unsupported

__all__ = [
    "LANES",
    "Backend",
    "BuildSpec",
    "Capability",
    "ContainerSpec",
    "ContainerState",
    "ContainerStatus",
    "Endpoint",
    "ExecResult",
    "ExecSession",
    "ImageInfo",
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
    "engine_lanes",
]

#: creates/starts at once on one engine (``Backend.lanes``); ENVKIT_ENGINE_LANES sets it
LANES = 3


def engine_lanes(environment: Mapping[str, str], default: int = LANES) -> int:
    try:
        return max(1, int(environment.get("ENVKIT_ENGINE_LANES", default)))
    except ValueError:
        return default


class Capability(enum.Enum):
    """What not every engine can do. The value completes "engine NAME cannot ..."."""

    GATE = "start containers behind a pre-start gate"
    COPY_FILES = "copy files into containers"
    EXPORT_FILESYSTEM = "export a container's filesystem"
    EXPORT_VOLUME = "export and import volumes"
    SIGNAL = "stop containers or send them signals"
    PAUSE = "pause containers"
    NETWORK_CONNECT = "connect containers to networks or disconnect them"
    INTERACTIVE_EXEC = "run commands interactively in containers: streamed output, stdin, a terminal"
    SHARED_NETNS = "run a helper container in another container's network namespace"
    HOST_PATHS = "mount paths of this machine (bind mounts): on a cluster they would be a node's file system"
    BUILD = "build images from a build context (no registry the cluster pulls from)"


class ExecSession(ABC):
    """A command started by ``Backend.exec_stream``, its streams attached."""

    @abstractmethod
    def wait(self) -> int:
        """Copy the streams until the command ends (blocking); its exit code."""

    def resize(self, rows: int, columns: int) -> None:  # noqa: B027 - optional: a terminal's size
        """Tell the command's terminal its new size (best effort; nothing without a TTY)."""


class Backend(ABC):
    """One container engine. Methods raise envkit errors (never the engine library's own)."""

    #: the engine's name in messages and in ``--engine`` ("docker", "swarm", ...)
    name: str = "engine"
    #: how many creates/starts the executor runs at once (``envkit.execute``); None: no bound. A
    #: single engine does them mostly one at a time; a cluster spreads them over its nodes.
    lanes: int | None = None
    #: the optional abilities this backend implements (see ``Capability``)
    capabilities: frozenset[Capability] = frozenset()
    #: the host name tests use to reach published ports ("127.0.0.1" for a local engine)
    host: str = "127.0.0.1"
    #: whether this process can reach container addresses directly (a local Linux engine)
    direct_routes: bool = True
    #: how ``connect()`` made this backend (engine name, environment), so that another process — the
    #: owner's watchdog (``envkit.reaper``) — can reach the same engine; None for a backend made by hand
    origin: tuple[str, Mapping[str, str]] | None = None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability, what: str = "") -> None:
        """Raise Unsupported naming the engine (and ``what`` needs it) unless the backend has it."""
        if capability not in self.capabilities:
            raise Unsupported(f"engine {self.name} cannot {capability.value}" + (f" ({what})" if what else ""))

    @abstractmethod
    def ping(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def settle(self) -> None:  # noqa: B027 - optional hook
        """Wait for the work a call left running behind it (the Docker gate's fallback file, written
        after its release returned). The executor calls it once its steps are done."""

    # -- images ---------------------------------------------------------------------------------------
    @abstractmethod
    def image_exists(self, tag: str) -> bool: ...

    @abstractmethod
    def pull_image(self, tag: str) -> None: ...

    @abstractmethod
    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        """Build ``spec.tag``; each line of build output goes to ``on_line`` (which may raise to cancel).
        A failed build raises EngineError whose message is the engine's reason alone."""

    @abstractmethod
    def list_images(self, labels: Mapping[str, str | None]) -> list[ImageInfo]:
        """The images carrying every label given (None: any value), with how many containers use each."""

    @abstractmethod
    def remove_image(self, tag: str) -> None:
        """Remove the tag ``repository:tag`` (the image itself goes with its last tag). One already gone
        is success; one a container still uses is a Conflict."""

    # -- networks and volumes -----------------------------------------------------------------------------
    @abstractmethod
    def create_network(self, spec: NetworkSpec) -> str: ...

    @abstractmethod
    def create_volume(self, spec: VolumeSpec) -> str: ...

    # -- containers -----------------------------------------------------------------------------------
    @abstractmethod
    def create_container(self, spec: ContainerSpec) -> str:
        """Make the container without running it. An engine with no create/start split records the
        spec here and creates it in ``start_container``; either way the returned id is final."""

    @abstractmethod
    def start_container(self, container_id: str) -> None:
        """Start it; a fixed address (``NetworkAttachment.address``) that another container took while it was
        stopped is given up for the engine's choice on that network, with the same aliases."""

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

    @abstractmethod
    def log_lines(self, container_id: str, tail: int | None = None, since: float | None = None,
                  until: float | None = None) -> list[LogLine]:
        """The container's log as lines with their times, oldest first; ``tail``: the last N lines;
        ``since`` / ``until``: UNIX times (seconds, fractions allowed) bounding the lines' times."""

    @abstractmethod
    def follow_log_lines(self, container_id: str, tail: int | None = None,
                         since: float | None = None) -> Iterator[LogLine]:
        """Like ``log_lines``, then each new line as it comes (blocks; ends when the container stops or
        the iterator is closed)."""

    # -- discovery and removal, by labels only -------------------------------------------------------------
    @abstractmethod
    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        """Containers, networks and volumes carrying every label given (None: any value)."""

    @abstractmethod
    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        """The containers carrying every label given. A listing may leave out what it does not carry
        (``detailed=False``: exit code, health, start time, OOM flag unknown); inspect to know them."""

    @abstractmethod
    def remove_container(self, container_id: str, grace: float) -> None:
        """Kill (grace 0) or stop within ``grace`` seconds, then remove with its anonymous volumes.
        A container that is already gone is success."""

    @abstractmethod
    def remove_network(self, network_id: str) -> None: ...

    @abstractmethod
    def remove_volume(self, name: str) -> None: ...

    # -- capability GATE -------------------------------------------------------------------------------
    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        """Create a container whose process waits behind a gate until ``release_container``.

        Returns the id and whether it is gated; an image that cannot be gated (no shell) gets a plain
        container, which the executor then starts at release time instead."""
        self.require(Capability.GATE)
        raise AssertionError("unreachable")

    def release_container(self, container_id: str) -> None:
        """Open the gate of a container created by ``create_gated_container``."""
        self.require(Capability.GATE)

    # -- capability COPY_FILES ---------------------------------------------------------------------------
    def copy_into(self, container_id: str, directory: str, archive: bytes) -> None:
        """Unpack a tar ``archive`` at ``directory`` in the container (owners and modes as in the tar).
        The directory must exist (else NotFound)."""
        self.require(Capability.COPY_FILES)

    def copy_from(self, container_id: str, path: str) -> bytes:
        """A tar of ``path`` in the container (a file, or a directory and what it holds), its entries
        named from the last component of ``path`` on (``a.txt``, ``dir/x``). NotFound if absent."""
        self.require(Capability.COPY_FILES)
        raise AssertionError("unreachable")

    # -- capability EXPORT_FILESYSTEM --------------------------------------------------------------------
    def export_filesystem(self, container_id: str, tag: str, labels: Mapping[str, str]) -> str:
        """Save the container's filesystem (not its volumes) as image ``tag``; returns the image id.
        The image carries ``labels`` (on Docker, also the container's own labels)."""
        self.require(Capability.EXPORT_FILESYSTEM)
        raise AssertionError("unreachable")

    def image_id(self, tag: str) -> str | None:
        """The engine's id of image ``tag`` (what its content is, whatever it is called), None if absent."""
        self.require(Capability.EXPORT_FILESYSTEM)
        raise AssertionError("unreachable")

    def rename_container(self, container_id: str, name: str) -> None:
        """Give a container another name (a name taken is a Conflict). The restore path of a reset
        (``envkit.restore``) makes a service's new container under a name of its own while the old one
        still runs, then gives it the service's name before its start (its DNS name follows)."""
        self.require(Capability.EXPORT_FILESYSTEM)

    # -- capability EXPORT_VOLUME ------------------------------------------------------------------------
    def export_volume(self, name: str) -> Iterator[bytes]:
        """The content of a volume as a tar stream, entries named from its root (``.``, ``./a.txt``)."""
        self.require(Capability.EXPORT_VOLUME)
        raise AssertionError("unreachable")

    def import_volume(self, name: str, archive: Iterable[bytes]) -> None:
        """Replace the content of an existing volume with a tar stream from ``export_volume``."""
        self.require(Capability.EXPORT_VOLUME)

    def copy_volume(self, source: str, target: str) -> None:
        """Replace the content of volume ``target`` with that of ``source`` (owners, modes and the root
        directory's own included). This default streams it through this process; an engine that can
        copy in place overrides it."""
        self.require(Capability.EXPORT_VOLUME)
        self.import_volume(target, self.export_volume(source))

    def fill_volume(self, spec: VolumeSpec, source: str) -> str:
        """Make volume ``spec`` hold what volume ``source`` (a snapshot's data) holds, replacing its
        content if it exists; returns its id. Writes to it never reach ``source``. This default creates
        it and copies (``copy_volume``); an engine that can make a copy-on-write view of ``source``
        overrides it, which then costs the same whatever the size of the data."""
        made = self.create_volume(spec)
        self.copy_volume(source, spec.name)
        return made

    # -- capability SIGNAL ---------------------------------------------------------------------------------
    def stop_container(self, container_id: str, grace: float) -> None:
        """Stop (its stop signal, then SIGKILL after ``grace`` seconds), keeping the container."""
        self.require(Capability.SIGNAL)

    def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to the container's process; a container that is not running is a Conflict."""
        self.require(Capability.SIGNAL)

    # -- capability PAUSE ----------------------------------------------------------------------------------
    def pause_container(self, container_id: str) -> None:
        self.require(Capability.PAUSE)

    def unpause_container(self, container_id: str) -> None:
        self.require(Capability.PAUSE)

    # -- capability INTERACTIVE_EXEC -----------------------------------------------------------------
    def exec_stream(self, container_id: str, command: tuple[str, ...], *, stdin: int | None, stdout: BinaryIO,
                    stderr: BinaryIO, tty: bool = False, user: str | None = None) -> ExecSession:
        """Start ``command`` in a running container with its streams attached, as ``docker exec`` does.

        ``stdin``: a file descriptor whose bytes go to the command until end of file (then its stdin
        is closed), or None for no stdin. Output is written to ``stdout`` / ``stderr`` and flushed as it
        arrives (with ``tty`` the terminal's one stream goes to ``stdout``). ``wait()`` on the session
        copies until the command ends and gives its exit code. A container that is not running is a
        Conflict, one that is gone NotFound."""
        self.require(Capability.INTERACTIVE_EXEC)
        raise AssertionError("unreachable")

    # -- capability NETWORK_CONNECT -------------------------------------------------------------------
    def connect_network(self, container_id: str, network: str, aliases: tuple[str, ...] = ()) -> None:
        self.require(Capability.NETWORK_CONNECT)

    def disconnect_network(self, container_id: str, network: str) -> None:
        self.require(Capability.NETWORK_CONNECT)
