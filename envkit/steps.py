"""The steps of a plan: one payload type per kind of step, each one engine action (or one wait).

A ``Step`` is what every kind shares — its id, why it is there, what it waits for, whom it serves —
and a payload that says what to do. The planner (``envkit.plan``) makes them, ``Plan.text()`` prints
them from ``action`` and ``target`` alone, and the executor hands each payload to the handler its
type maps to (``envkit.handlers.HANDLERS``). A new kind of step is a payload class here, a handler
there and a line in that table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from envkit.backends.base import BuildSpec, ContainerSpec, NetworkAttachment, NetworkSpec, VolumeSpec
from envkit.blueprint.model import Probe, Seed

if TYPE_CHECKING:
    from envkit.stubs.tls import CertAuthority

__all__ = [
    "PAYLOADS",
    "BuildImage",
    "CaptureSnapshot",
    "CreateContainer",
    "CreateNetwork",
    "CreateVolume",
    "FillVolume",
    "InstallCertificate",
    "Payload",
    "PullImage",
    "ReleaseContainer",
    "RemoveContainer",
    "SeedStep",
    "StartContainer",
    "Step",
    "StopContainer",
    "Usable",
    "WaitComplete",
    "WaitReady",
]


class Payload:
    """What one step does. ``action`` names the kind (plan text, events); ``target`` is the engine name
    of what the step makes or waits for (an image tag, a container name) or, for milestones, the service."""

    action: ClassVar[str]
    #: Scheduling hints, no part of what the step does (``envkit.execute``): ``cost`` is a rough
    #: estimate in seconds, used to run the steps on the longest remaining path first; ``lane``:
    #: the step is work the engine does mostly one at a time (creating and starting containers and
    #: networks), so it takes one of the executor's few engine lanes, in that order.
    cost: ClassVar[float] = 0.05
    lane: ClassVar[bool] = False

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def detail(self) -> str:
        """What the step does, briefly, for its start event ("" when action and target say it all)."""
        return ""


@dataclass(frozen=True)
class BuildImage(Payload):
    action: ClassVar[str] = "build"
    cost: ClassVar[float] = 30.0
    spec: BuildSpec

    @property
    def target(self) -> str:
        return self.spec.tag


@dataclass(frozen=True)
class PullImage(Payload):
    action: ClassVar[str] = "pull"
    cost: ClassVar[float] = 10.0
    tag: str

    @property
    def target(self) -> str:
        return self.tag


@dataclass(frozen=True)
class CreateNetwork(Payload):
    action: ClassVar[str] = "network"
    cost: ClassVar[float] = 0.2
    lane: ClassVar[bool] = True
    spec: NetworkSpec

    @property
    def target(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CreateVolume(Payload):
    action: ClassVar[str] = "volume"
    cost: ClassVar[float] = 0.05
    lane: ClassVar[bool] = True
    spec: VolumeSpec

    @property
    def target(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CreateContainer(Payload):
    action: ClassVar[str] = "create"
    cost: ClassVar[float] = 0.1
    lane: ClassVar[bool] = True
    spec: ContainerSpec
    gate: bool = False  # behind a pre-start gate, opened by the ``release`` step

    @property
    def target(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class StartContainer(Payload):
    action: ClassVar[str] = "start"
    cost: ClassVar[float] = 0.3
    lane: ClassVar[bool] = True
    container: str  # engine name
    gate: bool = False  # start the gate only; the service's process begins at ``release``

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class ReleaseContainer(Payload):
    """Open a gated container's gate (or start it, when its image could not be gated)."""

    action: ClassVar[str] = "release"
    cost: ClassVar[float] = 0.1
    container: str

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class WaitReady(Payload):
    action: ClassVar[str] = "ready"
    cost: ClassVar[float] = 0.5
    container: str
    probe: Probe | None  # None: ready once running (or healthy, when the image has a HEALTHCHECK)
    timeout: float

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class WaitComplete(Payload):
    """A job's container must exit 0."""

    action: ClassVar[str] = "complete"
    cost: ClassVar[float] = 1.0
    container: str
    timeout: float

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class InstallCertificate(Payload):
    """Copy a server certificate of the run's CA, for ``names``, and its key into a created TLS stub
    container (``envkit.stubs.tls``). The CA travels in memory only: it is no part of the plan's text."""

    action: ClassVar[str] = "tls"
    cost: ClassVar[float] = 0.1
    container: str  # engine name
    names: tuple[str, ...]
    authority: CertAuthority = field(repr=False, compare=False)

    @property
    def target(self) -> str:
        return self.container

    @property
    def detail(self) -> str:
        return "certificate for " + ", ".join(self.names)


@dataclass(frozen=True)
class Usable(Payload):
    """Milestone: every replica of a service is ready (a job: has completed) and whatever the plan puts
    between that and its dependants (seeds, a snapshot) is done. Dependants wait on this step."""

    action: ClassVar[str] = "usable"
    cost: ClassVar[float] = 0.0
    service: str

    @property
    def target(self) -> str:
        return self.service


@dataclass(frozen=True)
class SeedStep(Payload):
    """One step of a service's ``seed:`` list (``envkit.seeds`` does it, by the kind of ``seed``).

    Most kinds act on the service's first replica (``containers[0]``); ``copy`` on every replica. A ``run``
    step makes a one-off container of ``image`` on ``networks``, labelled ``labels`` (the run's, role seed)."""

    action: ClassVar[str] = "seed"
    cost: ClassVar[float] = 2.0
    service: str
    index: int  # 1-based position in the service's list
    total: int
    seed: Seed  # with the run's own values (``${run.id}``) resolved
    shown: str  # the step as a user reads it: "sql seed/orders.sql"
    run_id: str
    containers: tuple[str, ...]  # engine names of the service's replicas
    directory: Path  # the blueprint's folder (file names in messages are relative to it)
    environment: tuple[tuple[str, str], ...] = ()  # the service's: defaults of the SQL clients
    image: str | None = None  # run: the one-off container's image
    name: str = ""  # run: the one-off container's engine name
    networks: tuple[NetworkAttachment, ...] = ()  # run: where it is attached
    labels: tuple[tuple[str, str], ...] = ()  # run: its labels

    @property
    def target(self) -> str:
        return self.containers[0] if self.containers else self.service

    @property
    def detail(self) -> str:
        return f"{self.index}/{self.total} {self.shown}"


@dataclass(frozen=True)
class StopContainer(Payload):
    """Stop a container of a live run, keeping it (``envkit stop``, ``restart``, and before a re-creation)."""

    action: ClassVar[str] = "stop"
    cost: ClassVar[float] = 1.0
    container: str
    grace: float  # seconds between its stop signal and SIGKILL

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class RemoveContainer(Payload):
    """Remove a (stopped) container of a live run, so that its replacement can take its name."""

    action: ClassVar[str] = "remove"
    cost: ClassVar[float] = 0.2
    container: str

    @property
    def target(self) -> str:
        return self.container


@dataclass(frozen=True)
class FillVolume(Payload):
    """Make a run's volume (if it is not there yet) holding the content of a snapshot's data volume."""

    action: ClassVar[str] = "restore"
    cost: ClassVar[float] = 1.0
    spec: VolumeSpec
    source: str  # the snapshot's data volume

    @property
    def target(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CaptureSnapshot(Payload):
    """Capture a seeded service into the snapshot ``key`` (see ``envkit.capture``), then start it again."""

    action: ClassVar[str] = "snapshot"
    cost: ClassVar[float] = 5.0
    container: str
    key: str
    blueprint: str
    reset: str  # auto | template | restore
    environment: tuple[tuple[str, str], ...]
    grace: float
    probe: Probe | None
    timeout: float
    claim: str  # the claim volume this run holds for ``key``; released once the snapshot is complete

    @property
    def target(self) -> str:
        return self.container


#: every kind of step; the executor's table must handle each (a unit test holds them equal)
PAYLOADS: tuple[type[Payload], ...] = (
    BuildImage, PullImage, CreateNetwork, CreateVolume, CreateContainer, StartContainer, ReleaseContainer,
    WaitReady, WaitComplete, Usable, SeedStep, StopContainer, RemoveContainer, FillVolume, CaptureSnapshot,
    InstallCertificate,
)


@dataclass(frozen=True)
class Step:
    id: str  # e.g. "start:api-1"; unique in a plan, referred to by ``after``
    payload: Payload
    cause: str  # the human reason, printed under the step
    after: tuple[str, ...] = ()  # ids of the steps that must be done first
    services: tuple[str, ...] = ()  # the services this step belongs to (errors name them)
    replica: int | None = None  # the replica a container step is about

    @property
    def action(self) -> str:
        return self.payload.action

    @property
    def target(self) -> str:
        return self.payload.target

    def text(self) -> tuple[str, str]:
        """The step's two lines in ``Plan.text()``."""
        after = f"  after {', '.join(self.after)}" if self.after else ""
        return f"  {self.id:<28} {self.action:<8} {self.target}{after}", f"  {'':<28} ({self.cause})"
