"""Planning is pure: (blueprint, run identity, what the engine has and can do) → a graph of small steps.

Each step is one engine action (or one wait) with an id, a cause and the ids it waits for; its payload
types live in ``envkit.steps``. The executor runs them; ``Plan.text()`` prints them (``envkit plan``),
and unit tests compare that text. No I/O here.

Containers are *created* as soon as their image, networks and volumes exist — all in parallel — and
only *started* when their dependencies meet their conditions; that keeps the critical path to
start → ready hops. Each service ends in a ``usable:<service>`` milestone after every replica is ready
(a job: completed); dependants waiting for "ready" or "completed" wait on that milestone, so steps
that must come between a service being ready and being used (seeding it, say) slot in before it
without touching any dependant's edges.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from envkit import capabilities as caps
from envkit import labels as L
from envkit import secrets
from envkit.backends.base import (
    BuildSpec,
    Capability,
    ContainerSpec,
    MountSpec,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    PortKey,
    VolumeSpec,
)
from envkit.blueprint import refs
from envkit.blueprint.keys import container_fields
from envkit.blueprint.model import Blueprint, Build, Probe, Service
from envkit.secrets import Secret
from envkit.seed_plan import outward, seed_steps, writers
from envkit.seed_plan import seed_images as _seed_images
from envkit.snapshots import Use
from envkit.steps import (
    BuildImage,
    CaptureSnapshot,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    FillVolume,
    PullImage,
    ReleaseContainer,
    StartContainer,
    Step,
    Usable,
    WaitComplete,
    WaitReady,
)
from envkit.stubs import tls
from envkit.stubs.tls import CertAuthority

__all__ = ["Plan", "RunIdentity", "Step", "build_spec", "container_spec", "make_plan", "ordered"]


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    owner: str
    created_at: str
    version: str
    expires_at: str = ""  # "" = no expiry (envkit.gc)
    lifetime: str = "owner"  # owner | detached (envkit.gc)


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
            lines.extend(s.text())
        return "\n".join(lines)


JOB_TIMEOUT = 600.0
DEFAULT_WAIT = 60.0


def _stamp(identity: RunIdentity, bp: Blueprint) -> dict[str, str]:
    return {
        L.MANAGED: "true", L.RUN: identity.run_id, L.BLUEPRINT: bp.name, L.BLUEPRINT_PATH: str(bp.path or bp.file),
        L.OWNER: identity.owner, L.CREATED_AT: identity.created_at, L.VERSION: identity.version,
        L.LIFETIME: identity.lifetime, **({L.EXPIRES_AT: identity.expires_at} if identity.expires_at else {}),
    }


def make_plan(
    bp: Blueprint,
    identity: RunIdentity,
    existing_images: frozenset[str],
    image_tags: dict[str, str],
    only: tuple[str, ...] = (),
    *,
    capabilities: frozenset[Capability],
    engine: str = "engine",
    seed: bool = True,
    snapshots: Mapping[str, Use] | None = None,
    authority: CertAuthority | None = None,
) -> Plan:
    """``image_tags`` maps each service with a build to its content tag (see ``envkit.images``).
    ``authority``: the run's CA, which signs the certificates of its TLS stubs (``envkit.stubs.tls``).

    ``capabilities`` and ``engine`` are the backend's (``backend.capabilities``, ``backend.name``):
    a blueprint key the engine cannot serve is refused here (``envkit.capabilities``), and the
    pre-start gate is planned only where the engine has it. ``seed=False``: no seed steps (``--no-seed``).

    ``snapshots``: service → what to do with its snapshot (``envkit.snapshots``): start it from the
    snapshot's image with its volumes restored (no seeds), or capture one before it is usable.
    """
    snapshots = snapshots or {}
    selected = bp.closure(only) if only else tuple(sorted(bp.services))
    caps.check(bp, selected, engine, capabilities)
    gating = caps.gating(capabilities)
    services = [bp.services[n] for n in ordered(bp, selected)]
    stamp = _stamp(identity, bp)
    run = identity.run_id
    steps: list[Step] = []

    # Images: one step per distinct tag that the engine does not have yet (a seed's ``run`` may need one).
    image_of: dict[str, str] = {}
    image_step: dict[str, str] = {}
    users: dict[str, list[str]] = {}  # tag -> the services (or "svc/seed/N") that need it
    builds: dict[str, Build | None] = {}
    for svc in services:
        hit = snapshots[svc.name].snapshot if svc.name in snapshots else None
        if hit is not None:  # the snapshot's image, which exists: nothing to build or pull
            image_of[svc.name] = hit.image
            continue
        tag = image_tags[svc.name] if svc.build else str(svc.image)
        image_of[svc.name] = tag
        users.setdefault(tag, []).append(svc.name)
        builds.setdefault(tag, svc.build)
    for svc in services if seed else ():
        if svc.name in snapshots and snapshots[svc.name].snapshot is not None:
            continue  # started from its snapshot: its seeds do not run
        for key, tag, build in _seed_images(svc, image_of[svc.name], image_tags):
            users.setdefault(tag, []).append(key)
            builds.setdefault(tag, build)
    for tag, keys in users.items():
        if tag in existing_images:
            continue
        names = tuple(dict.fromkeys(k.split("/", 1)[0] for k in keys))
        build = builds[tag]
        sid = f"image:{tag}"
        if build is not None:
            rel = build.context.relative_to(bp.directory) if build.context.is_relative_to(bp.directory) else build.context
            steps.append(Step(sid, BuildImage(build_spec(build, tag)), f"no image for build context {rel} yet",
                              services=names))
        else:
            steps.append(Step(sid, PullImage(tag), "image not on the engine", services=names))
        for key in keys:
            image_step[key] = sid

    used_networks = sorted({n for s in services for n in s.network_names})
    for net in used_networks:
        netdef = bp.networks[net]
        lab = {**stamp, L.NETWORK: net, **dict(netdef.labels)}
        network = NetworkSpec(L.network_name(run, net), tuple(sorted(lab.items())), netdef.internal)
        steps.append(Step(f"network:{net}", CreateNetwork(network), "private network of the run"))
    used_volumes = sorted({m.source for s in services for m in s.volumes if m.type == "volume"})
    for vol in used_volumes:
        lab = {**stamp, L.VOLUME: vol, **dict(bp.volumes[vol].labels)}
        volume = VolumeSpec(L.volume_name(run, vol), tuple(sorted(lab.items())))
        steps.append(Step(f"volume:{vol}", CreateVolume(volume), "private volume of the run"))

    # With --only, outputs that name a service outside the selection are left out (nothing to resolve).
    # Secret values become placeholders, read back from where they are (see envkit.secrets).
    outputs = {f"{L.OUTPUT_PREFIX}{k}": secrets.placeholders(v, bp.secrets) for k, v in bp.outputs
               if refs.services_in(v) <= set(selected)}
    outputs.update(_secret_locators(bp, services))
    outputs.update({f"{L.SECRET_OUTPUT_PREFIX}{k}": "true" for k, _ in bp.outputs
                    if k in bp.secret_outputs and f"{L.OUTPUT_PREFIX}{k}" in outputs})
    # Services whose seeds run in this run (not started from a snapshot): a dependant's may write into them.
    seeding = [n for n in selected if seed and (n not in snapshots or snapshots[n].snapshot is None)]
    for svc in services:
        use = snapshots.get(svc.name)
        # A snapshot service is never gated: its committed image would keep the gate as its entrypoint.
        gated = gating and _gated(svc) and use is None
        # "started": the dependency's own process is running (its release when gated, else its start).
        # "ready" / "completed": the dependency's milestone, after every replica is ready or done.
        started = [f"{'release' if gating and _gated(bp.services[d.service]) else 'start'}:{d.service}-{m}"
                   for d in svc.depends_on if d.condition == "started"
                   for m in range(1, bp.services[d.service].replicas + 1)]
        usable = [f"usable:{d.service}" for d in svc.depends_on if d.condition != "started"]
        conds = ", ".join(f"{d.service} {d.condition}" for d in svc.depends_on)
        one = (svc.name,)
        replica_done: list[str] = []
        for n in range(1, svc.replicas + 1):
            cid = f"{svc.name}-{n}"
            name = L.container_name(run, svc.name, n)
            needs = [f"network:{x}" for x in svc.network_names]
            needs += [f"volume:{m.source}" for m in svc.volumes if m.type == "volume"]
            if svc.name in image_step:
                needs.insert(0, image_step[svc.name])
            spec = container_spec(svc, n, image_of[svc.name], run, {**stamp, **outputs}, bp.secrets)
            if use is not None:
                own = image_tags[svc.name] if svc.build else str(svc.image)
                spec, fills = _from_snapshot(svc, spec, use, run, stamp, own, writers(bp, seeding, svc.name))
                steps.extend(fills)
                needs += [f.id for f in fills]
            cert = None
            if svc.stub is not None and svc.stub.tls is not None:  # its certificate, before its process starts
                spec, cert = tls.plan_step(svc, n, spec, run, authority)
            what = ("container of the run" if use is None or use.snapshot is None
                    else f"container from snapshot {use.key[:16]} (seeds skipped)")
            steps.append(Step(f"create:{cid}", CreateContainer(spec, gate=gated), what, tuple(needs), one, n))
            made = f"create:{cid}"
            if cert is not None:
                steps.append(cert)
                made = cert.id
            running = f"start:{cid}"
            if gated:
                # Pre-started: the container starts at once behind a gate (a shell waiting for a signal);
                # when its dependencies are usable the gate is released and the process is exec'd. That
                # takes one signal instead of a container start (~0.4 s) on the critical path.
                # Its dependencies' own starts go first: on a small machine starts compete for CPU, and
                # theirs are on the critical path.
                first = [f"start:{d.service}-{m}" for d in svc.depends_on
                         for m in range(1, bp.services[d.service].replicas + 1)]
                steps.append(Step(f"start:{cid}", StartContainer(name, gate=True), "pre-start behind the gate",
                                  (made, *first), one, n))
                steps.append(Step(f"release:{cid}", ReleaseContainer(name), f"after {conds}",
                                  (f"start:{cid}", *started, *usable), one, n))
                running = f"release:{cid}"
            else:
                steps.append(Step(f"start:{cid}", StartContainer(name), f"after {conds}" if conds else "no dependencies",
                                  (made, *started, *usable), one, n))
            if svc.kind == "job":
                steps.append(Step(f"complete:{cid}", WaitComplete(name, JOB_TIMEOUT), "job must exit 0",
                                  (running,), one, n))
                replica_done.append(f"complete:{cid}")
            else:
                # No probe: ready once started, or once healthy when the image has a HEALTHCHECK.
                cause = (f"probe {secrets.placeholders(svc.ready.describe(), bp.secrets)}" if svc.ready
                         else "no probe: started (or image healthy)")
                wait = WaitReady(name, svc.ready, svc.ready.timeout if svc.ready else DEFAULT_WAIT)
                steps.append(Step(f"ready:{cid}", wait, cause, (running,), one, n))
                replica_done.append(f"ready:{cid}")
        milestone = "every replica completed" if svc.kind == "job" else "every replica ready"
        if seed and svc.seed and (use is None or use.snapshot is None):  # seeds: between the service being ready and being usable
            # Steps that may write into a dependency wait for its capture (a "started" edge does not), so
            # that a snapshot holds its own seeds' writes only.
            captured = [f"usable:{d}" for d in _unsettled(bp, svc.name) if outward(svc) and d in snapshots
                        and snapshots[d].snapshot is None]
            seeded = seed_steps(bp, svc, identity, stamp, image_of[svc.name], image_tags, image_step,
                                replica_done + captured)
            steps.extend(seeded)
            replica_done, milestone = [seeded[-1].id], f"{milestone}, {len(seeded)} seed steps done"
        if use is not None and use.snapshot is None:
            grace = svc.stop_grace_period
            capture = CaptureSnapshot(L.container_name(run, svc.name, 1), use.key, bp.name,
                                      svc.snapshot.reset if svc.snapshot else "auto", svc.environment, grace,
                                      svc.ready, svc.ready.timeout if svc.ready else DEFAULT_WAIT, use.claim)
            steps.append(Step(f"snapshot:{svc.name}", capture, f"capture snapshot {use.key[:16]} of the seeded state",
                              tuple(replica_done), one))
            replica_done = [f"snapshot:{svc.name}"]
        steps.append(Step(f"usable:{svc.name}", Usable(svc.name), milestone, tuple(replica_done), one))
    return Plan(run_id=run, identity=identity, blueprint=bp, services=selected, steps=tuple(steps))


def _unsettled(bp: Blueprint, name: str) -> list[str]:
    """The services ``name`` depends on, directly or through others, that may still be seeding when it
    starts: ``usable:d`` comes before ``name`` starts only where some service on the way waits for d with
    a condition other than ``started``."""
    reached = set(bp.closure((name,)))
    settled = {d.service for x in reached for d in bp.services[x].depends_on if d.condition != "started"}
    return sorted(reached - settled - {name})


def _from_snapshot(svc: Service, spec: ContainerSpec, use: Use, run: str, stamp: dict[str, str],
                   own: str, reseed: tuple[str, ...] = ()) -> tuple[ContainerSpec, list[Step]]:
    """The container of a snapshot service: labelled with the key and the dependants whose seeds a reset
    of it runs again (``reseed``, ``envkit.seed_plan.writers``); on a hit, made from the snapshot's
    image with each captured volume restored into a volume of the run (the blueprint's own volume where
    one is mounted at that path, else a new one of the run in place of the image's anonymous volume).
    Its ``io.envkit.image`` stays the service's own image ``own`` (the snapshot's key holds it), so a
    rebuild of the services whose build changed leaves it alone while its build is the same."""
    labels = dict(spec.labels)
    labels[L.SNAPSHOT] = use.key
    if reseed:
        labels[L.RESEED] = ",".join(reseed)
    snap = use.snapshot
    if snap is None:
        return replace(spec, labels=tuple(sorted(labels.items()))), []
    # The committed image carries the capturing run's io.envkit.* labels; blank those this run does not set.
    labels = {**{k: "" for k in snap.image_labels}, **labels, L.IMAGE: own}
    named = {m.target: m.source for m in svc.volumes if m.type == "volume"}
    mounts = list(spec.mounts)
    fills: list[Step] = []
    for i, (target, data) in enumerate(snap.mounts, 1):
        after: tuple[str, ...] = ()
        if target in named:
            volume, after = L.volume_name(run, named[target]), (f"volume:{named[target]}",)
            lab = {**stamp, L.VOLUME: named[target]}
        else:
            volume, after = L.volume_name(run, f"{svc.name}-snapshot-{i}"), ()
            lab = {**stamp, L.VOLUME: f"{svc.name}-snapshot-{i}"}
            mounts.append(MountSpec("volume", volume, target, False))
        fills.append(Step(f"restore:{svc.name}-{i}", FillVolume(VolumeSpec(volume, tuple(sorted(lab.items()))), data),
                          f"{target} from snapshot {use.key[:16]}", after, (svc.name,)))
    return replace(spec, labels=tuple(sorted(labels.items())), mounts=tuple(mounts)), fills


def _gated(svc: Service) -> bool:
    """Pre-start behind a gate: worth it when the service waits for another to be ready or complete."""
    return svc.prestart and any(d.condition != "started" for d in svc.depends_on)


def ordered(bp: Blueprint, selected: tuple[str, ...]) -> list[str]:
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


def probe_label(probe: Probe | None, hidden: tuple[Secret, ...] = ()) -> str:
    """The probe as JSON, for another process to run it again (``envkit status``); secret values as
    placeholders."""
    if probe is None:
        return ""
    fields: dict[str, object] = {k: v for k, v in probe.__dict__.items() if v not in (None, (), "")}
    for k, v in fields.items():
        if isinstance(v, str):
            fields[k] = secrets.placeholders(v, hidden)
        elif isinstance(v, tuple):
            fields[k] = [secrets.placeholders(x, hidden) for x in v]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def build_spec(build: Build, tag: str) -> BuildSpec:
    """How the image ``tag`` (``envkit.images.image_tag``) of a build context is built."""
    return BuildSpec(tag=tag, context=build.context, dockerfile=build.dockerfile, args=build.args,
                     target=build.target, labels=((L.CONTEXT_HASH, tag.rsplit(":", 1)[1]),))


def _secret_locators(bp: Blueprint, services: list[Service]) -> dict[str, str]:
    """``io.envkit.secret.NAME``: where each secret's value already is among the run's containers."""
    envs = [(s.name, s.environment) for s in services]
    out: dict[str, str] = {}
    for secret in bp.secrets:
        where = secrets.locate(secret, envs)
        if where is not None:
            out.setdefault(f"{L.SECRET_PREFIX}{secret.name}", where)
    return out


def container_spec(svc: Service, replica: int, image: str, run: str, stamp: dict[str, str],
                   hidden: tuple[Secret, ...] = ()) -> ContainerSpec:
    """Replica ``replica`` of ``svc`` in run ``run``: its name, labels (``stamp``: the run's own; secret values
    in ``hidden`` only as placeholders), networks with their DNS aliases, ports, mounts and the keys passed
    through. ``envkit.live`` re-creates containers of a live run with it."""
    name = L.container_name(run, svc.name, replica)
    lab = {
        **{k: secrets.placeholders(v, hidden) for k, v in svc.labels}, **stamp,
        L.SERVICE: svc.name, L.REPLICA: str(replica), L.ROLE: "service",
        L.KIND: svc.kind, L.STOP_GRACE: f"{svc.stop_grace_period:g}", L.IMAGE: image,
    }
    if svc.ready is not None:
        lab[L.PROBE] = probe_label(svc.ready, hidden)
    lab[L.DEPENDS_ON] = json.dumps({d.service: d.condition for d in svc.depends_on}, sort_keys=True,
                                   separators=(",", ":"))
    networks = tuple(
        NetworkAttachment(L.network_name(run, a.network), (svc.name, f"{svc.name}-{replica}", *a.aliases))
        for a in svc.networks
    )
    mounts = tuple(
        MountSpec(m.type, L.volume_name(run, m.source) if m.type == "volume" else m.source, m.target, m.read_only)
        for m in svc.volumes
    )
    # Keys that pass straight through to the engine come from the format's table (blueprint/keys.py);
    # only what the planner transforms is spelled out here.
    return ContainerSpec(
        name=name, image=image, labels=tuple(sorted(lab.items())), networks=networks,
        hostname=svc.hostname or (svc.name if svc.replicas == 1 else f"{svc.name}-{replica}"),
        ports=tuple(PortBinding(PortKey(p.container, "udp" if p.protocol == "udp" else "tcp"), p.host_ip, p.host)
                    for p in svc.ports),
        mounts=mounts, stop_timeout=int(svc.stop_grace_period) if svc.stop_grace_period else None,
        healthcheck_off=svc.ready is not None and svc.ready.kind == "none",
        **container_fields(svc),
    )
