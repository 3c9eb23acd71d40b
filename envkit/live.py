"""Working on a live run, as with Compose: stop, start and restart services in place, and rebuild one
after a code change while its dependants keep running.

Each operation is a small pure plan (``LivePlan``) of the same step payloads ``up`` uses, plus stop and
remove, made from what the engine's labels say of the run (and, for a rebuild, from the blueprint the
run was made from). The ``Executor`` runs it, in parallel where the order allows, with ``up``'s events.

- ``stop``: a service after every selected service that depends on it. The container is kept.
- ``start``: a service once its selected dependencies are ready (completed, started: as its
  ``depends_on`` asks), then it must be ready itself, by its probe read back from its labels.
- ``restart``: both. Containers are kept, and with them what they wrote, their logs, names and DNS
  aliases, and their host ports: pinned ones, and those envkit chose when it made the container
  (``envkit.backends.hostports``). An engine that chose them itself (a remote one) gives them anew at
  each start (Docker 20.10), so ``RestartResult.moved`` lists what moved; ``rebuild`` pins them.
- ``rebuild``: the service's image is built again from its context (a content-hashed tag: an unchanged
  context is not rebuilt), then each replica in turn is stopped, removed and created again from the
  blueprint (``envkit.plan.container_spec``) with the same name, run labels, networks, DNS aliases and
  the host ports it had, pinned; then started and waited for. Replicas go one at a time.

Jobs are left alone unless named: a named job is run again and must exit 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from envkit import labels as L
from envkit.backends.base import Backend, Capability, ContainerSpec, ContainerState, Endpoint, PortKey
from envkit.blueprint import Blueprint, Probe, load
from envkit.errors import BlueprintError, EnvkitError, UsageError
from envkit.events import Event, EventSink, ignore
from envkit.execute import Executor
from envkit.images import image_tag
from envkit.plan import DEFAULT_WAIT, JOB_TIMEOUT, build_spec, container_spec
from envkit.probes import probe_from_label
from envkit.runs import RunInfo, describe
from envkit.steps import (
    BuildImage,
    CreateContainer,
    PullImage,
    RemoveContainer,
    StartContainer,
    Step,
    StopContainer,
    Usable,
    WaitComplete,
    WaitReady,
)

__all__ = ["LivePlan", "LiveResult", "Verb", "lifecycle", "plan_lifecycle", "plan_rebuild", "prepare",
           "prepare_rebuild", "rebuild"]

Verb = Literal["stop", "start", "restart"]
#: the labels that say which run a container belongs to, kept as they are on a re-created container
RUN_LABELS = (L.MANAGED, L.RUN, L.BLUEPRINT, L.BLUEPRINT_PATH, L.OWNER, L.CREATED_AT, L.VERSION)
STOP_GRACE = 10.0  # seconds a stop waits before it kills, when neither the call nor the blueprint says


@dataclass(frozen=True)
class LivePlan:
    run_id: str
    verb: str  # stop | start | restart | rebuild
    services: tuple[str, ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()  # what the user should know before it runs
    _index: dict[str, Step] = field(default_factory=dict, compare=False, repr=False)

    def step(self, step_id: str) -> Step:
        if not self._index:
            self._index.update({s.id: s for s in self.steps})
        return self._index[step_id]

    def text(self) -> str:
        lines = [f"{self.verb} in run {self.run_id} (services: {', '.join(self.services) or 'none'})"]
        for s in self.steps:
            lines.extend(s.text())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class LiveResult:
    plan: LivePlan
    info: RunInfo  # the run afterwards
    #: container name -> port -> (before, after): published ports that changed
    moved: dict[str, dict[PortKey, tuple[Endpoint, Endpoint | None]]]
    notes: tuple[str, ...]


# -- what the run says of itself -------------------------------------------------------------------------
def _select(info: RunInfo, names: Sequence[str], what: str) -> tuple[str, ...]:
    unknown = [n for n in names if n not in info.services]
    if unknown:
        raise UsageError(f"{what}: run {info.run_id} has no service {', '.join(unknown)} "
                         f"(services: {', '.join(info.services)})")
    if names:
        return tuple(dict.fromkeys(names))
    return tuple(s for s, cs in info.services.items() if cs[0].labels.get(L.KIND, "service") == "service")


def _dependencies(info: RunInfo, bp: Blueprint | None) -> dict[str, dict[str, str]] | None:
    """service -> {dependency: condition}: from the containers' labels, else from the blueprint."""
    found: dict[str, dict[str, str]] = {}
    for service, containers in info.services.items():
        text = containers[0].labels.get(L.DEPENDS_ON)
        if text is None:  # a run made before the label existed
            if bp is None:
                return None
            return {s: {d.service: d.condition for d in bp.services[s].depends_on}
                    for s in info.services if s in bp.services}
        try:
            found[service] = {str(k): str(v) for k, v in json.loads(text).items()}
        except (ValueError, AttributeError):
            found[service] = {}
    return found


def _kind(info: RunInfo, service: str) -> str:
    return info.replicas(service)[0].labels.get(L.KIND, "service")


def _grace(c: ContainerState, timeout: float | None) -> float:
    """How long a stop waits after the stop signal: ``timeout`` when given, else the service's
    ``stop_grace_period``, else Compose's 10 s (teardown's default of killing is for throwaway runs)."""
    if timeout is not None:
        return timeout
    try:
        grace = float(c.labels.get(L.STOP_GRACE, "0") or 0)
    except ValueError:
        grace = 0.0
    return grace if grace > 0 else STOP_GRACE


def _wait_step(service: str, kind: str, name: str, probe: Probe | None, n: int, after: str) -> Step:
    one = (service,)
    if kind == "job":
        return Step(f"complete:{service}-{n}", WaitComplete(name, JOB_TIMEOUT), "job must exit 0", (after,), one, n)
    cause = f"probe {probe.describe()}" if probe else "no probe: started (or image healthy)"
    return Step(f"ready:{service}-{n}", WaitReady(name, probe, probe.timeout if probe else DEFAULT_WAIT), cause,
                (after,), one, n)


def _waits_for(service: str, deps: Mapping[str, Mapping[str, str]], selected: Sequence[str],
               info: RunInfo) -> list[str]:
    """The steps a (re)start of ``service`` waits for: its selected dependencies' starts or milestones."""
    out: list[str] = []
    for dep, condition in sorted(deps.get(service, {}).items()):
        if dep not in selected:
            continue  # not touched: as it is
        if condition == "started":
            out += [f"start:{dep}-{n}" for n in range(1, len(info.replicas(dep)) + 1)]
        else:
            out.append(f"usable:{dep}")
    return out


# -- stop / start / restart ---------------------------------------------------------------------------------
def plan_lifecycle(info: RunInfo, verb: Verb, services: Sequence[str] = (), bp: Blueprint | None = None,
                   timeout: float | None = None) -> LivePlan:
    """Pure: the steps of ``verb`` on the selected services (every service, no jobs, when none is named).
    ``timeout``: seconds each stop waits before it kills (see ``_grace``)."""
    selected = _select(info, services, verb)
    deps = _dependencies(info, bp)
    notes: list[str] = []
    if deps is None:
        notes.append(f"run {info.run_id} does not record its services' dependencies and its blueprint could not "
                     "be read: services are stopped and started side by side")
        deps = {}
    dependants = {s: sorted(d for d in selected if s in deps.get(d, {})) for s in selected}
    steps: list[Step] = []
    for service in selected:
        one = (service,)
        for n, c in enumerate(info.replicas(service), start=1):
            stop_id = f"stop:{service}-{n}"
            if verb in ("stop", "restart"):
                after = tuple(f"stop:{d}-{m}" for d in dependants[service] for m in range(1, len(info.replicas(d)) + 1))
                cause = f"after its dependants {', '.join(dependants[service])}" if after else "nothing depends on it"
                steps.append(Step(stop_id, StopContainer(c.name, _grace(c, timeout)), cause, after, one, n))
            if verb in ("start", "restart"):
                after = tuple((stop_id,) if verb == "restart" else ()) + tuple(_waits_for(service, deps, selected, info))
                names = [d for d in sorted(deps.get(service, {})) if d in selected]
                cause = f"after {', '.join(names)}" if names else "no dependency restarted"
                steps.append(Step(f"start:{service}-{n}", StartContainer(c.name), cause, after, one, n))
                probe = probe_from_label(c.labels.get(L.PROBE, ""))
                steps.append(_wait_step(service, _kind(info, service), c.name, probe, n, f"start:{service}-{n}"))
        if verb in ("start", "restart"):
            waits = tuple(s.id for s in steps if s.services == one and s.action in ("ready", "complete"))
            steps.append(Step(f"usable:{service}", Usable(service), "every replica ready", waits, one))
    return LivePlan(info.run_id, verb, selected, _stable(steps), tuple(notes))


def _stable(steps: list[Step]) -> tuple[Step, ...]:
    """Steps in an order where each comes after those it waits for (ties as they were made)."""
    done: set[str] = set()
    out: list[Step] = []
    todo = list(steps)
    while todo:
        ready = [s for s in todo if set(s.after) <= done]
        if not ready:  # the labels describe a cycle (a hand-edited run): keep the given order
            return tuple(out + todo)
        for s in ready:
            done.add(s.id)
            out.append(s)
        todo = [s for s in todo if s.id not in done]
    return tuple(out)


def _blueprint_of(info: RunInfo, blueprint: str | Path | None, env: Mapping[str, str] | None,
                  required: bool) -> Blueprint | None:
    path = blueprint or info.blueprint_path
    if not path:
        if required:
            raise UsageError(f"run {info.run_id} does not say which blueprint it was made from; name it")
        return None
    try:
        return load(path, env)
    except BlueprintError:
        if required:
            raise
        return None
    except EnvkitError as exc:
        if required:
            raise UsageError(f"run {info.run_id} was made from {path}, which cannot be read: {exc}") from exc
        return None


def _existing(info: RunInfo) -> dict[str, str]:
    return {c.name: c.id for c in info.containers}


def _execute(backend: Backend, info: RunInfo, plan: LivePlan, on_event: EventSink) -> LiveResult:
    on_event(Event("plan", info.run_id, f"{plan.verb} in run {info.run_id}: {len(plan.steps)} steps",
                   detail=str(len(plan.steps))))
    for note in plan.notes:
        on_event(Event("note", info.run_id, note))
    Executor(backend, on_event, existing=_existing(info)).run(plan)
    after = describe(backend, info.run_id)
    notes = _follow_faults(backend, after, info)
    refaulted = bool(notes)
    moved: dict[str, dict[PortKey, tuple[Endpoint, Endpoint | None]]] = {}
    for before in info.containers:
        if not before.running or plan.verb == "stop":
            continue
        now = next((c for c in after.containers if c.name == before.name), None)
        changed = {k: (v, now.ports.get(k) if now else None) for k, v in before.ports.items()
                   if now is None or now.ports.get(k) != v}
        if changed:
            moved[before.name] = changed
    for name, ports in moved.items():
        what = ", ".join(f"{k} {a.host_ip}:{a.port} -> {b.port if b else 'none'}" for k, (a, b) in sorted(ports.items()))
        notes.append(f"{name}: host port moved ({what}): the engine gave them anew at this start; "
                     "pin them in the blueprint, or `envkit rebuild` the service once to keep them")
    for note in notes:
        on_event(Event("note", info.run_id, note))
    if refaulted:  # a replica stopped or paused again, another rule or proxy: the run as it is now
        after = describe(backend, info.run_id)
    return LiveResult(plan, after, moved, tuple(notes))


def _follow_faults(backend: Backend, after: RunInfo, before: RunInfo) -> list[str]:
    """Put back the faults of replicas this restarted (a new network namespace; a stop, kill or pause the
    start undid: docs/faults.md), here for every caller: an Environment's restart and the CLI's alike; a
    note per fault re-applied."""
    from envkit.faults.follow import reconcile

    was = {c.id: c.started_at for c in before.containers}
    started = {c.id for c in after.containers if c.running and was.get(c.id, c.started_at) != c.started_at}
    return [f"fault {f.id} ({f.describe()}) applied again to the restarted replica" for f in reconcile(
        backend, after.run_id, after, started)]


def prepare(backend: Backend, run_id: str, verb: Verb, services: Sequence[str] = (),
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> tuple[RunInfo, LivePlan]:
    """The run as it is and the plan of ``verb`` on it (``envkit restart --dry-run`` prints the plan)."""
    if verb != "start":
        backend.require(Capability.SIGNAL, f"envkit {verb}")
    info = describe(backend, run_id)
    bp = None
    if any(L.DEPENDS_ON not in c.labels for c in info.containers):
        bp = _blueprint_of(info, None, env, required=False)
    return info, plan_lifecycle(info, verb, services, bp, timeout)


def lifecycle(backend: Backend, run_id: str, verb: Verb, services: Sequence[str] = (), *,
              on_event: EventSink = ignore, env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> LiveResult:
    """Stop, start or restart services of a live run (every service when none is named); ``timeout``:
    seconds each stop waits after the stop signal before it kills."""
    info, plan = prepare(backend, run_id, verb, services, env, timeout)
    return _execute(backend, info, plan, on_event)


# -- rebuild ----------------------------------------------------------------------------------------------
def plan_rebuild(info: RunInfo, bp: Blueprint, services: Sequence[str], tags: Mapping[str, str],
                 existing_images: frozenset[str], timeout: float | None = None) -> LivePlan:
    """Pure: build what changed, then replace each replica of the named services (by default: the
    services, not jobs, whose build context changed). ``tags``: each service's image (a build's tag)."""
    missing = [s for s in services if s in info.services and s not in bp.services]
    if missing:
        raise UsageError(f"rebuild: {bp.file} has no service {', '.join(missing)} any more")
    tls = [s for s in services if s in bp.services and (stub := bp.services[s].stub) is not None and stub.tls]
    if tls:  # its CA's key lived only in the process that planned the run (envkit.stubs.tls)
        raise UsageError(f"rebuild: {', '.join(tls)} is a TLS stub, whose run CA cannot sign a new certificate; "
                         f"envkit down {info.run_id} and up again")
    named = bool(services)
    selected = _select(info, services, "rebuild")
    if not named:
        selected = tuple(s for s in selected if s in bp.services and bp.services[s].build is not None
                         and not _made_from(info.replicas(s)[0], tags[s]))
    deps = {s: {d.service: d.condition for d in bp.services[s].depends_on} for s in selected}
    notes: list[str] = []
    steps: list[Step] = []
    image_step: dict[str, str] = {}
    for service in selected:
        build, tag = bp.services[service].build, tags[service]
        if tag in existing_images:
            continue
        sid = f"image:{tag}"
        if sid not in image_step.values():
            users = tuple(s for s in selected if tags[s] == tag)
            payload = BuildImage(build_spec(build, tag)) if build is not None else PullImage(tag)
            steps.append(Step(sid, payload, "its build context changed" if build else "image not on the engine",
                              services=users))
        image_step[service] = sid
    first_labels = info.containers[0].labels if info.containers else {}
    stamp = {k: v for k, v in first_labels.items()
             if k in RUN_LABELS or k.startswith((L.OUTPUT_PREFIX, L.SECRET_PREFIX, L.SECRET_OUTPUT_PREFIX))}
    for service in selected:
        svc = bp.services[service]
        one = (service,)
        replicas = info.replicas(service)
        if len(replicas) != svc.replicas:
            notes.append(f"{bp.file} now asks for {svc.replicas} replicas of {service}; the run keeps its "
                         f"{len(replicas)} (`envkit down` and `up` to change that)")
        previous = image_step.get(service)
        for n, old in enumerate(replicas, start=1):
            cid = f"{service}-{n}"
            spec = container_spec(svc, n, tags[service], info.run_id, stamp, bp.secrets)
            _check_resources(info, service, spec)
            if old.running:
                spec = replace(spec, ports=tuple(
                    replace(p, host_port=old.ports[p.container].port) if p.host_port is None and p.container in old.ports
                    else p for p in spec.ports))
            elif spec.ports:
                notes.append(f"{old.name} is not running: its published ports are given anew")
            if old.labels.get(L.SNAPSHOT) and n == 1:
                notes.append(f"{service} was started from snapshot {old.labels[L.SNAPSHOT][:16]}; its new container "
                             "is made from the image, without the seeded state, and `envkit reset` no longer "
                             f"applies to it (`envkit down {info.run_id}` and `up` to start from a snapshot again)")
            first = (previous,) if previous else ()
            steps.append(Step(f"stop:{cid}", StopContainer(old.name, _grace(old, timeout)),
                              "its replacement is ready to be made", first, one, n))
            steps.append(Step(f"remove:{cid}", RemoveContainer(old.name), "frees its name and host ports",
                              (f"stop:{cid}",), one, n))
            steps.append(Step(f"create:{cid}", CreateContainer(spec), "same name, networks, aliases and host ports",
                              (f"remove:{cid}",), one, n))
            waits = tuple(_waits_for(service, deps, selected, info))
            steps.append(Step(f"start:{cid}", StartContainer(old.name), "replacement", (f"create:{cid}", *waits), one, n))
            wait = _wait_step(service, svc.kind, old.name, svc.ready, n, f"start:{cid}")
            steps.append(wait)
            previous = wait.id  # the next replica goes once this one is back: the others keep answering
        finals = tuple(s.id for s in steps if s.services == one and s.action in ("ready", "complete"))
        steps.append(Step(f"usable:{service}", Usable(service), "every replica replaced", finals, one))
    return LivePlan(info.run_id, "rebuild", selected, _stable(steps), tuple(notes))


def _made_from(c: ContainerState, tag: str) -> bool:
    """Whether a container was made from the image ``tag`` (by its label; on Docker a run made before
    the label existed still carries its build's hash, inherited from the image)."""
    if L.IMAGE in c.labels:
        return c.labels[L.IMAGE] == tag
    return bool(c.labels.get(L.CONTEXT_HASH)) and c.labels[L.CONTEXT_HASH].startswith(tag.rsplit(":", 1)[-1])


def _check_resources(info: RunInfo, service: str, spec: ContainerSpec) -> None:
    for a in spec.networks:
        if a.network not in info.networks:
            raise UsageError(f"rebuild: service {service} is now on network {a.network}, which run {info.run_id} "
                             "does not have (`envkit down` and `up` to change networks)")
    for m in spec.mounts:
        if m.type == "volume" and m.source not in info.volumes:
            raise UsageError(f"rebuild: service {service} now mounts volume {m.source}, which run {info.run_id} "
                             "does not have (`envkit down` and `up` to change volumes)")


def prepare_rebuild(backend: Backend, run_id: str, services: Sequence[str] = (), *,
                    blueprint: str | Path | None = None, env: Mapping[str, str] | None = None,
                    timeout: float | None = None) -> tuple[RunInfo, LivePlan]:
    """The run as it is and the plan of rebuilding ``services`` from its blueprint (or ``blueprint``)."""
    backend.require(Capability.SIGNAL, "envkit rebuild")
    info = describe(backend, run_id)
    bp = _blueprint_of(info, blueprint, env, required=True)
    assert bp is not None
    if bp.name != info.blueprint:
        raise UsageError(f"run {run_id} was made from blueprint '{info.blueprint}', not '{bp.name}' ({bp.file})")
    tags = {}
    for s in info.services:
        if s in bp.services:
            build = bp.services[s].build
            tags[s] = image_tag(bp.name, build) if build is not None else str(bp.services[s].image)
    existing = frozenset(t for t in set(tags.values()) if backend.image_exists(t))
    return info, plan_rebuild(info, bp, services, tags, existing, timeout)


def rebuild(backend: Backend, run_id: str, services: Sequence[str] = (), *, blueprint: str | Path | None = None,
            on_event: EventSink = ignore, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> LiveResult:
    """Rebuild and replace services of a live run from its blueprint (the run's own, or ``blueprint``)."""
    info, plan = prepare_rebuild(backend, run_id, services, blueprint=blueprint, env=env, timeout=timeout)
    return _execute(backend, info, plan, on_event)
