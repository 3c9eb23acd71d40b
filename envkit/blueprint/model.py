"""The typed, frozen blueprint model: what the planner reads. Built only from normalised data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar, Literal

from envkit.backends.types import Placement
from envkit.blueprint.source import Marks
from envkit.errors import Problem
from envkit.secrets import Secret
from envkit.stubs.model import StubDef

if TYPE_CHECKING:
    from envkit.faults.scenarios import Scenario

__all__ = [
    "INITDB",
    "Attachment",
    "Blueprint",
    "Build",
    "Condition",
    "CopySeed",
    "Dependency",
    "ExecSeed",
    "HttpSeed",
    "Key",
    "Mount",
    "NetworkDef",
    "Port",
    "Probe",
    "RunSeed",
    "Seed",
    "Service",
    "SnapshotDef",
    "SqlSeed",
    "VolumeDef",
    "initdb_mount",
]

Condition = Literal["started", "ready", "completed"]
ProbeKind = Literal["tcp", "http", "exec", "log", "healthcheck", "none"]  # none: healthcheck: false
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
    host: int | None = None  # None: a free port chosen at create, kept for the replica's life
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
        if self.kind == "none":
            return "none (the image's HEALTHCHECK turned off)"
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
class SqlSeed:
    """SQL run through the service's own client (psql, mysql) inside its container."""

    file: Path | None = None  # a .sql or .sql.gz file beside the blueprint …
    inline: str | None = None  # … or the SQL itself
    client: Literal["psql", "mysql", "mariadb"] | None = None  # None: detected in the container
    database: str | None = None  # None: POSTGRES_DB / MYSQL_DATABASE of the service, else the client's default
    user: str | None = None  # None: POSTGRES_USER (else postgres) / root
    password: str | None = None  # None: MYSQL_ROOT_PASSWORD (or MARIADB_…) of the service, when one is set
    timeout: float = 600.0
    at: Key = field(default=(), compare=False)
    kind: ClassVar[str] = "sql"

    def describe(self) -> str:
        return f"sql {self.shown}"

    @property
    def shown(self) -> str:
        if self.file is not None:
            return self.file.name
        text = " ".join((self.inline or "").split())
        return text if len(text) <= 60 else text[:59] + "…"


@dataclass(frozen=True)
class CopySeed:
    """Files or a folder from beside the blueprint into the container."""

    source: Path
    target: str  # where the file or folder lands in the container (absolute)
    owner: str | None = None  # "uid[:gid]" (numbers); None: root
    mode: int | None = None  # None: the file's own mode
    at: Key = field(default=(), compare=False)
    kind: ClassVar[str] = "copy"

    def describe(self) -> str:
        return f"copy {self.source.name} -> {self.target}"


@dataclass(frozen=True)
class ExecSeed:
    """A command in the service's container; must exit 0."""

    command: tuple[str, ...]
    stdin: Path | None = None  # a file beside the blueprint fed to the command's standard input
    user: str | None = None
    timeout: float = 600.0
    #: where it may write: "dependencies" (also into the services it depends on: never in its snapshot,
    #: run again by a reset of one of those), "own" (into this service alone, as its sql and copy steps)
    writes: Literal["dependencies", "own"] = "dependencies"
    at: Key = field(default=(), compare=False)
    kind: ClassVar[str] = "exec"

    def describe(self) -> str:
        return "exec " + " ".join(self.command) + (f" < {self.stdin.name}" if self.stdin else "")


@dataclass(frozen=True)
class HttpSeed:
    """A request to the service; the answer must have the expected status."""

    path: str
    port: int | None = None  # None: the service's only published port
    method: str = "POST"
    json: str | None = None  # the JSON body, serialised
    body: Path | None = None  # a file sent as the body
    headers: tuple[tuple[str, str], ...] = ()
    status: int | None = None  # None: any 2xx
    timeout: float = 60.0
    writes: Literal["dependencies", "own"] = "dependencies"
    at: Key = field(default=(), compare=False)
    kind: ClassVar[str] = "http"

    def describe(self) -> str:
        return f"http {self.method} {self.path}" + (f" -> {self.status}" if self.status else "")


@dataclass(frozen=True)
class RunSeed:
    """A one-off container on the run's networks (a migration tool, a loader); must exit 0; removed after."""

    image: str | None = None  # None with no build: the service's own image
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    working_dir: str | None = None
    timeout: float = 600.0
    writes: Literal["dependencies", "own"] = "dependencies"
    at: Key = field(default=(), compare=False)
    kind: ClassVar[str] = "run"

    def describe(self) -> str:
        what = " ".join(self.command) if self.command else "its command"
        return f"run {what}"


#: one step of a service's ``seed:`` list
Seed = SqlSeed | CopySeed | ExecSeed | HttpSeed | RunSeed
#: where the official postgres, mysql, mariadb and mongo images look for scripts to run at first start
INITDB = PurePosixPath("/docker-entrypoint-initdb.d")


def initdb_mount(target: str) -> bool:
    """A mount at or into INITDB: the image runs what it holds once, when its data directory is new."""
    path = PurePosixPath(target)
    return path == INITDB or INITDB in path.parents


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: Build | None
    kind: Literal["service", "job", "stub"] = "service"
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
    cap_drop: tuple[str, ...] = ()  # dropped from the engine's default set (ALL: every one); needs no allow:
    read_only: bool = False  # the container's root file system read-only (Compose's read_only)
    init: bool = False  # the engine's init as PID 1: reaps zombies, passes signals on (Compose's init)
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard), -1 unlimited (Compose's ulimits)
    hostname: str | None = None
    prestart: bool = True  # start the container early behind a gate (needs /bin/sh in the image)
    seed: tuple[Seed, ...] = ()  # run in order after the service is ready, before its dependants start
    allow: tuple[str, ...] = ()  # what it may ask of the host (envkit.blueprint.trust.ALLOWANCES)
    snapshot: SnapshotDef | None = None  # None: started fresh (and seeded) in every run
    stub: StubDef | None = None  # kind: stub — its routes (docs/stubs.md); image and probe filled in by the loader
    placement: Placement | None = None  # where a distributed engine may run it (docs/swarm.md)

    @property
    def network_names(self) -> tuple[str, ...]:
        return tuple(a.network for a in self.networks)

    def port(self, container_port: int, protocol: str = "tcp") -> Port | None:
        return next((p for p in self.ports if p.container == container_port and p.protocol == protocol), None)

    @property
    def initialises(self) -> bool:
        """Seeded the way Compose users seed: scripts mounted where the image runs them at first start."""
        return any(initdb_mount(m.target) for m in self.volumes)


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
    #: the secret values (envkit.secrets): never in labels, plans, events or errors
    secrets: tuple[Secret, ...] = field(default=(), compare=False, repr=False)
    #: outputs marked ``secret: true`` (any output holding a secret value is shown masked too)
    secret_outputs: frozenset[str] = field(default=frozenset(), compare=False)
    #: what `envkit validate` warns about (each host access the blueprint opted into); never printed by the core
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    #: named fault scenarios (top-level ``faults:``; envkit/faults/scenarios.py)
    faults: dict[str, Scenario] = field(default_factory=dict)
    #: the blueprint file, absolute (None for a mapping): where `envkit seed`, `reset`, `rebuild` ... load it
    #: again, from whatever folder they run in (``file`` is as the user wrote it, for messages)
    path: Path | None = field(default=None, compare=False)

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
