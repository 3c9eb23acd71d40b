"""What each kind of step does: one handler per payload type, looked up in ``HANDLERS``.

A handler gets the step's context (backend, ledger, abort flag, deadline) and its payload, makes the
engine call, and returns what happened (``Done``) or raises an envkit error that names the service at
fault. Handlers decide nothing about order: that is the plan's. A new kind of step is a payload in
``envkit.steps``, a handler here and one line in ``HANDLERS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from envkit.backends.base import Backend, Capability, ContainerSpec
from envkit.capture import capture
from envkit.errors import BuildFailed, EngineError, EnvkitError, PortBusy, ServiceFailed
from envkit.probes import Aborted, ProbeLog, failure, wait_exited, wait_ready
from envkit.seed_log import SeedLog
from envkit.steps import (
    BuildImage,
    CaptureSnapshot,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    FillVolume,
    InstallCertificate,
    Payload,
    PullImage,
    ReleaseContainer,
    RemoveContainer,
    SeedStep,
    StartContainer,
    Step,
    StopContainer,
    Usable,
    WaitComplete,
    WaitReady,
)

__all__ = ["HANDLERS", "Context", "Done", "Ledger", "run_step"]

BUILD_TAIL = 25


@dataclass
class Ledger:
    """What this execution created, in creation order."""

    created: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, name)
    containers: dict[str, str] = field(default_factory=dict)  # container name -> id
    gated: set[str] = field(default_factory=set)  # container names created behind a gate
    # container name -> (spec, gate) while it may be made again (not started, nothing copied in yet)
    made: dict[str, tuple[ContainerSpec, bool]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, ident: str, name: str) -> None:
        with self.lock:
            self.created.append((kind, ident, name))
            if kind == "container":
                self.containers[name] = ident

    def swap(self, name: str, ident: str) -> None:
        """Container ``name`` was made again: ``ident`` replaces the removed one in creation order."""
        with self.lock:
            old = self.containers[name]
            self.created = [(k, ident if (k, i) == ("container", old) else i, n) for k, i, n in self.created]
            self.containers[name] = ident


@dataclass(frozen=True)
class Context:
    """What a handler may use while it runs one step."""

    backend: Backend
    ledger: Ledger
    abort: threading.Event
    step: Step
    output: Callable[[str], None]  # a line of the step's own output (a build's log), as an event
    deadline: float | None = None  # time.monotonic() value by which everything must be ready
    progress: Callable[[str], None] = lambda detail: None  # what a wait last saw, as a "progress" event
    probes: ProbeLog | None = None  # where readiness checks report their results (forensics)
    seeds: SeedLog | None = None  # where seed steps report theirs

    @property
    def service(self) -> str:
        return self.step.services[0] if self.step.services else ""

    def remaining(self, timeout: float) -> float:
        if self.deadline is None:
            return timeout
        return max(0.0, min(timeout, self.deadline - time.monotonic()))


@dataclass(frozen=True)
class Done:
    message: str  # ready-made text for display ("built envkit/shop-app:…", "db ready in 0.41s")
    detail: str = ""  # what happened, briefly, when there is more to it than "done" ("gated")


def _build(x: Context, p: BuildImage) -> Done:
    tail: list[str] = []

    def line(text: str) -> None:
        if x.abort.is_set():
            raise Aborted()  # leaving the build stream makes the engine cancel the build
        tail.append(text)
        del tail[:-BUILD_TAIL]
        x.output(text)

    try:
        x.backend.build_image(p.spec, line)
    except EngineError as exc:
        raise BuildFailed(x.step.services, p.spec.tag, str(exc), tail) from exc
    return Done(f"built {p.spec.tag}")


def _pull(x: Context, p: PullImage) -> Done:
    try:
        x.backend.pull_image(p.tag)
    except EngineError as exc:
        raise BuildFailed(x.step.services, p.tag,
                          f"image is not on the engine and cannot be pulled ({exc}); "
                          "build it from a Dockerfile with 'build:' instead", []) from exc
    return Done(f"pulled {p.tag}")


def _network(x: Context, p: CreateNetwork) -> Done:
    x.ledger.add("network", x.backend.create_network(p.spec), p.spec.name)
    return Done(f"network {p.spec.name}")


def _volume(x: Context, p: CreateVolume) -> Done:
    x.ledger.add("volume", x.backend.create_volume(p.spec), p.spec.name)
    return Done(f"volume {p.spec.name}")


def _make(x: Context, spec: ContainerSpec, gate: bool) -> tuple[str, bool]:
    return x.backend.create_gated_container(spec) if gate else (x.backend.create_container(spec), False)


def _create(x: Context, p: CreateContainer) -> Done:
    ident, gated = _make(x, p.spec, p.gate)
    x.ledger.add("container", ident, p.spec.name)
    x.ledger.made[p.spec.name] = (p.spec, p.gate)
    if gated:
        x.ledger.gated.add(p.spec.name)
        return Done(f"created {p.spec.name} (gated)", "gated")
    return Done(f"created {p.spec.name}")


#: how many times a container is made again when a host port chosen for it was taken before its first start
PORT_RETRIES = 3


def _remade(x: Context, name: str, exc: PortBusy, tries: int) -> bool:
    """Make container ``name`` again with other host ports when ``exc`` is about a port the backend chose
    (not one the blueprint fixed) and the container may be made again; False when it may not."""
    made = x.ledger.made.get(name)
    if made is None or tries >= PORT_RETRIES:
        return False
    spec, gate = made
    fixed = {p.host_port for p in spec.ports if p.host_port}
    if (exc.port and exc.port in fixed) or all(p.host_port for p in spec.ports):
        return False
    x.backend.remove_container(x.ledger.containers[name], 0)  # never started: nothing of it is lost
    ident, gated = _make(x, spec, gate)
    x.ledger.swap(name, ident)
    (x.ledger.gated.add if gated else x.ledger.gated.discard)(name)
    return True


def _start_now(x: Context, name: str) -> Done:
    tries = 0
    while True:
        try:
            x.backend.start_container(x.ledger.containers[name])
            break
        except PortBusy as exc:
            if _remade(x, name, exc, tries):
                tries += 1
                continue
            _port_busy(x, name, exc)
        except EngineError as exc:
            raise ServiceFailed(x.service, f"cannot start: {exc}", container=name) from exc
    x.ledger.made.pop(name, None)
    return Done(f"started {name}" + (f" (made again {tries}x: a host port chosen for it was taken)" if tries else ""))


def _port_busy(x: Context, name: str, exc: PortBusy) -> NoReturn:
    where = f"host port {exc.host_ip}:{exc.port}" if exc.port else "a host port it publishes"
    made = x.ledger.made.get(name)
    if made and exc.port and exc.port not in {p.host_port for p in made[0].ports}:
        raise ServiceFailed(x.service, f"cannot start: {where}, chosen for it as a free port, was taken before "
                            f"it started, {PORT_RETRIES + 1} times in a row (another program or run takes host "
                            "ports as fast): try again", container=name) from exc
    raise ServiceFailed(x.service, f"cannot start: {where} is already in use (by another program or "
                        f"run); stop what uses it, or let envkit choose a free port: write the port in "
                        f"services.{x.service}.ports without a host part (`- 8080` rather than `- 8080:8080`, "
                        "or no `host:`)", container=name) from exc


def _start(x: Context, p: StartContainer) -> Done:
    if p.gate and p.container not in x.ledger.gated:
        return Done(f"{p.container}: starts at release (its image cannot be gated)", "starts at release")
    return _start_now(x, p.container)


def _release(x: Context, p: ReleaseContainer) -> Done:
    if p.container not in x.ledger.gated:  # its image could not be gated: this is its start
        return _start_now(x, p.container)
    ident = x.ledger.containers[p.container]
    try:
        x.backend.release_container(ident)
    except EngineError as exc:
        state = x.backend.inspect_container(ident)
        why = f"exited with code {state.exit_code} before its release" if not state.running else str(exc)
        raise failure(x.backend, x.service, why, ident, p.container) from exc
    return Done(f"released {p.container}")


def _ready(x: Context, p: WaitReady) -> Done:
    began = time.monotonic()
    wait_ready(x.backend, x.ledger.containers[p.container], x.service, p.probe, x.remaining(p.timeout), x.abort,
               x.progress, x.probes)
    return Done(f"{x.service} ready in {time.monotonic() - began:.2f}s")


def _complete(x: Context, p: WaitComplete) -> Done:
    wait_exited(x.backend, x.ledger.containers[p.container], x.service, x.remaining(p.timeout), x.abort, x.probes)
    return Done(f"{x.service} completed")


def _usable(x: Context, p: Usable) -> Done:
    return Done(f"{p.service} usable")


def _seed(x: Context, p: SeedStep) -> Done:
    from envkit import seeds  # its kinds' logic; imported on first use

    began, at = time.monotonic(), time.time()
    run = seeds.Run(x.backend, x.ledger.containers, x.abort, p, lambda ident, name: x.ledger.add("container", ident,
                                                                                              name), x.remaining)
    try:
        what = seeds.run_seed(run)
    except Aborted:
        raise
    except EnvkitError as exc:
        if x.seeds is not None:
            x.seeds.record(run.result(at, time.monotonic() - began, exc))
        raise
    if x.seeds is not None:
        x.seeds.record(run.result(at, time.monotonic() - began))
    return Done(f"{p.service} seed {p.index}/{p.total} in {time.monotonic() - began:.2f}s: {what}", p.detail)


def _fill(x: Context, p: FillVolume) -> Done:
    x.ledger.add("volume", x.backend.fill_volume(p.spec, p.source), p.spec.name)
    return Done(f"volume {p.spec.name} restored from the snapshot")


def _certificate(x: Context, p: InstallCertificate) -> Done:
    from envkit.stubs import tls

    x.ledger.made.pop(p.container, None)  # what is copied in would be lost if it were made again
    x.backend.copy_into(x.ledger.containers[p.container], tls.TLS_DIR, tls.archive(p.authority, p.names))
    return Done(f"{p.container}: certificate of run {p.authority.run}'s CA for {p.names[0]} and "
                f"{len(p.names) - 1} more names")


def _capture(x: Context, p: CaptureSnapshot) -> Done:
    began = time.monotonic()
    snap = capture(x.backend, x.ledger.containers[p.container], x.service, p.blueprint, p.key, reset=p.reset,
                   environment=dict(p.environment), grace=p.grace, probe=p.probe,
                   timeout=x.remaining(p.timeout), abort=x.abort, claim=p.claim)
    how = "template databases" if snap.reset.startswith("template") else "restore"
    return Done(f"{x.service} snapshot {p.key[:16]} captured in {time.monotonic() - began:.2f}s", f"reset: {how}")


def _stop(x: Context, p: StopContainer) -> Done:
    x.backend.require(Capability.SIGNAL, f"stop {p.container}")
    x.backend.stop_container(x.ledger.containers[p.container], p.grace)
    return Done(f"stopped {p.container}")


def _remove(x: Context, p: RemoveContainer) -> Done:
    x.backend.remove_container(x.ledger.containers[p.container], 0)
    return Done(f"removed {p.container}")


#: payload type -> handler (each handler takes its own payload type; ``run_step`` pairs them)
HANDLERS: Mapping[type[Payload], Callable[[Context, Any], Done]] = {
    BuildImage: _build,
    PullImage: _pull,
    CreateNetwork: _network,
    CreateVolume: _volume,
    CreateContainer: _create,
    StartContainer: _start,
    ReleaseContainer: _release,
    WaitReady: _ready,
    WaitComplete: _complete,
    Usable: _usable,
    SeedStep: _seed,
    StopContainer: _stop,
    RemoveContainer: _remove,
    FillVolume: _fill,
    CaptureSnapshot: _capture,
    InstallCertificate: _certificate,
}


def run_step(x: Context) -> Done:
    return HANDLERS[type(x.step.payload)](x, x.step.payload)
