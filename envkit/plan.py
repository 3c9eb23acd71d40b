"""Planning is pure: (blueprint, run identity, what the engine already has) → a graph of small steps.

Each step is one engine action with an id, a cause and the ids it waits for. The executor runs them;
``Plan.text()`` prints them (``envkit plan``), and unit tests compare that text. No I/O here.

Containers are *created* as soon as their image, networks and volumes exist — all in parallel — and
only *started* when their dependencies meet their conditions; that keeps the critical path to
start → ready hops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from envkit import labels as L
from envkit.backends.base import BuildSpec, ContainerSpec, MountSpec, PortBinding
from envkit.blueprint import refs
from envkit.blueprint.model import Blueprint, Probe, Service

__all__ = ["Plan", "RunIdentity", "Step", "make_plan"]

Action = Literal["build", "pull", "network", "volume", "create", "start", "release", "ready", "complete"]


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    owner: str
    created_at: str
    version: str


@dataclass(frozen=True)
class Step:
    id: str
    action: Action
    target: str  # the engine name of what the step makes or waits for
    cause: str
    after: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # the services this step belongs to (errors name them)
    build: BuildSpec | None = None
    container: ContainerSpec | None = None
    probe: Probe | None = None
    timeout: float = 0.0  # ready/complete: how long to wait
    labels: tuple[tuple[str, str], ...] = ()  # network/volume labels
    internal: bool = False
    gate: bool = False  # create/start: behind a pre-start gate, opened by the ``release`` step


@dataclass(frozen=True)
class Plan:
    run_id: str
    identity: RunIdentity
    blueprint: Blueprint
    services: tuple[str, ...]
    steps: tuple[Step, ...]
    _index: dict[str, Step] = field(default_factory=dict, compare=False, repr=False)

    def step(self, step_id: str) -> Step:
        if not self._index:
            self._index.update({s.id: s for s in self.steps})
        return self._index[step_id]

    def text(self) -> str:
        lines = [f"plan for run {self.run_id} (blueprint {self.blueprint.name}, "
                 f"services: {', '.join(self.services)})"]
        for s in self.steps:
            after = f"  after {', '.join(s.after)}" if s.after else ""
            lines.append(f"  {s.id:<28} {s.action:<8} {s.target}{after}")
            lines.append(f"  {'':<28} ({s.cause})")
        return "\n".join(lines)


JOB_TIMEOUT = 600.0
DEFAULT_WAIT = 60.0


def _stamp(identity: RunIdentity, bp: Blueprint) -> dict[str, str]:
    return {
        L.MANAGED: "true", L.RUN: identity.run_id, L.BLUEPRINT: bp.name, L.BLUEPRINT_PATH: str(bp.file),
        L.OWNER: identity.owner, L.CREATED_AT: identity.created_at, L.VERSION: identity.version,
    }


def make_plan(
    bp: Blueprint,
    identity: RunIdentity,
    existing_images: frozenset[str],
    image_tags: dict[str, str],
    only: tuple[str, ...] = (),
) -> Plan:
    """``image_tags`` maps each service with a build to its content tag (see ``envkit.images``)."""
    selected = bp.closure(only) if only else tuple(sorted(bp.services))
    services = [bp.services[n] for n in _ordered(bp, selected)]
    stamp = _stamp(identity, bp)
    run = identity.run_id
    steps: list[Step] = []

    # Images: one step per distinct tag that the engine does not have yet.
    image_of: dict[str, str] = {}
    image_step: dict[str, str] = {}
    users: dict[str, list[Service]] = {}
    for svc in services:
        tag = image_tags[svc.name] if svc.build else str(svc.image)
        image_of[svc.name] = tag
        users.setdefault(tag, []).append(svc)
    for tag, svcs in users.items():
        if tag in existing_images:
            continue
        names = tuple(s.name for s in svcs)
        build = svcs[0].build
        sid = f"image:{tag}"
        if build is not None:
            rel = build.context.relative_to(bp.directory) if build.context.is_relative_to(bp.directory) else build.context
            build_spec = BuildSpec(tag=tag, context=build.context, dockerfile=build.dockerfile, args=build.args,
                             target=build.target, labels=((L.CONTEXT_HASH, tag.rsplit(":", 1)[1]),))
            steps.append(Step(sid, "build", tag, f"no image for build context {rel} yet", services=names, build=build_spec))
        else:
            steps.append(Step(sid, "pull", tag, "image not on the engine", services=names))
        for svc_name in names:
            image_step[svc_name] = sid

    used_networks = sorted({n for s in services for n in s.network_names})
    for net in used_networks:
        netdef = bp.networks[net]
        lab = {**stamp, L.NETWORK: net, **dict(netdef.labels)}
        steps.append(Step(f"network:{net}", "network", L.network_name(run, net), "private network of the run",
                          labels=tuple(sorted(lab.items())), internal=netdef.internal))
    used_volumes = sorted({m.source for s in services for m in s.volumes if m.type == "volume"})
    for vol in used_volumes:
        lab = {**stamp, L.VOLUME: vol, **dict(bp.volumes[vol].labels)}
        steps.append(Step(f"volume:{vol}", "volume", L.volume_name(run, vol), "private volume of the run",
                          labels=tuple(sorted(lab.items()))))

    # With --only, outputs that name a service outside the selection are left out (nothing to resolve).
    outputs = {f"{L.OUTPUT_PREFIX}{k}": v for k, v in bp.outputs
               if refs.services_in(v) <= set(selected)}
    for svc in services:
        for n in range(1, svc.replicas + 1):
            cid = f"{svc.name}-{n}"
            name = L.container_name(run, svc.name, n)
            needs = [f"network:{x}" for x in svc.network_names]
            needs += [f"volume:{m.source}" for m in svc.volumes if m.type == "volume"]
            if svc.name in image_step:
                needs.insert(0, image_step[svc.name])
            spec = _container_spec(svc, n, name, image_of[svc.name], run, {**stamp, **outputs})
            steps.append(Step(f"create:{cid}", "create", name, "container of the run", tuple(needs),
                              (svc.name,), container=spec, gate=_gated(svc)))
            waits: list[str] = []  # what the service's process must wait for
            started: list[str] = []  # "started" conditions: the dependency's process is running
            for dependency in svc.depends_on:
                dep, cond = dependency.service, dependency.condition
                d = bp.services[dep]
                for m in range(1, d.replicas + 1):
                    if cond == "started":
                        started.append(f"{'release' if _gated(d) else 'start'}:{dep}-{m}")
                    elif d.kind == "job":
                        waits.append(f"complete:{dep}-{m}")
                    else:
                        waits.append(f"ready:{dep}-{m}")
            conds = ", ".join(f"{d.service} {d.condition}" for d in svc.depends_on)
            running = f"start:{cid}"
            if _gated(svc):
                # Pre-started: the container starts at once behind a gate (a shell waiting for a signal);
                # when its dependencies are ready the gate is released and the process is exec'd. That
                # takes one signal instead of a container start (~0.4 s) on the critical path.
                # Its dependencies' own starts go first: on a small machine starts compete for CPU, and
                # theirs are on the critical path.
                first = [f"start:{d.service}-{m}" for d in svc.depends_on
                         for m in range(1, bp.services[d.service].replicas + 1)]
                steps.append(Step(f"start:{cid}", "start", name, "pre-start behind the gate",
                                  (f"create:{cid}", *first), (svc.name,), gate=True))
                steps.append(Step(f"release:{cid}", "release", name, f"after {conds}",
                                  (f"start:{cid}", *started, *waits), (svc.name,)))
                running = f"release:{cid}"
            else:
                steps.append(Step(f"start:{cid}", "start", name, f"after {conds}" if conds else "no dependencies",
                                  (f"create:{cid}", *started, *waits), (svc.name,)))
            if svc.kind == "job":
                steps.append(Step(f"complete:{cid}", "complete", name, "job must exit 0", (running,),
                                  (svc.name,), timeout=JOB_TIMEOUT))
            else:
                # No probe: ready once started, or once healthy when the image has a HEALTHCHECK.
                cause = f"probe {svc.ready.describe()}" if svc.ready else "no probe: started (or image healthy)"
                steps.append(Step(f"ready:{cid}", "ready", name, cause, (running,), (svc.name,),
                                  probe=svc.ready, timeout=svc.ready.timeout if svc.ready else DEFAULT_WAIT))
    return Plan(run_id=run, identity=identity, blueprint=bp, services=selected, steps=tuple(steps))


def _gated(svc: Service) -> bool:
    """Pre-start behind a gate: worth it when the service waits for another to be ready or complete."""
    return svc.prestart and any(d.condition != "started" for d in svc.depends_on)


def _ordered(bp: Blueprint, selected: tuple[str, ...]) -> list[str]:
    """Dependencies before dependants, ties by name: a stable order for plan text and events."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(d.service for d in bp.services[name].depends_on):
            visit(dep)
        done.append(name)

    for name in sorted(selected):
        visit(name)
    return done


def probe_label(probe: Probe | None) -> str:
    if probe is None:
        return ""
    fields = {k: v for k, v in probe.__dict__.items() if v not in (None, (), "")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _container_spec(svc: Service, replica: int, name: str, image: str, run: str,
                    stamp: dict[str, str]) -> ContainerSpec:
    lab = {
        **dict(svc.labels), **stamp, L.SERVICE: svc.name, L.REPLICA: str(replica), L.ROLE: "service",
        L.KIND: svc.kind, L.STOP_GRACE: f"{svc.stop_grace_period:g}",
    }
    if svc.ready is not None:
        lab[L.PROBE] = probe_label(svc.ready)
    networks = tuple(
        (L.network_name(run, a.network), (svc.name, f"{svc.name}-{replica}", *a.aliases)) for a in svc.networks
    )
    mounts = tuple(
        MountSpec(m.type, L.volume_name(run, m.source) if m.type == "volume" else m.source, m.target, m.read_only)
        for m in svc.volumes
    )
    return ContainerSpec(
        name=name, image=image, labels=tuple(sorted(lab.items())), networks=networks, command=svc.command,
        entrypoint=svc.entrypoint, environment=svc.environment, user=svc.user, working_dir=svc.working_dir,
        hostname=svc.hostname or (svc.name if svc.replicas == 1 else f"{svc.name}-{replica}"),
        ports=tuple(PortBinding(p.container, p.protocol, p.host_ip, p.host) for p in svc.ports),
        mounts=mounts, tmpfs=svc.tmpfs, memory=svc.memory, cpus=svc.cpus, privileged=svc.privileged,
        cap_add=svc.cap_add, stop_signal=svc.stop_signal,
        stop_timeout=int(svc.stop_grace_period) if svc.stop_grace_period else None,
    )
