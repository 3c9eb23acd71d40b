"""Before a plan with snapshots is made: which services use one, their keys, and hit or claim for each.

``up`` calls ``resolve`` once the run's identity is known and its watchdog runs, before the first
container: the images of the snapshot services (and of what they depend on) are built or pulled first,
since a key holds the image's engine id; then each key is looked up in dependency order, waiting while
another process captures it. The result is the ``snapshots`` input of ``make_plan``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.base import Backend
from envkit.blueprint.model import Blueprint, Service
from envkit.blueprint.validate import RUN_ID_REFUSAL, outward, outward_refusal, run_id_seed, snapshot_refusal
from envkit.errors import EnvkitError, UsageError
from envkit.events import Event, EventSink
from envkit.execute import Executor
from envkit.images import image_tag
from envkit.plan import Plan, ordered

__all__ = ["UNKNOWN_KEY", "SnapshotsGone", "gone", "image_ids", "passed_over", "preview", "resolve", "seeded",
           "wanted"]

WAIT = 900.0  # seconds a run waits, at most, for another process's capture of the same key
# A plan's stand-in for a key it cannot know yet (no engine, or an image not built: a key holds its id).
UNKNOWN_KEY = "<key once built>"


def seeded(svc: Service) -> bool:
    """What ``--snapshot`` covers: a long-running service of one replica with seed steps, or with scripts
    mounted where its image runs them at first start (``Service.initialises``; what is mounted is in the key);
    not one whose seeds write the run id (a snapshot is every later run's start), nor one whose seeds may
    write into the services it depends on (``outward``: its snapshot would not hold those writes)."""
    return (svc.kind == "service" and svc.replicas == 1 and (bool(svc.seed) or svc.initialises)
            and run_id_seed(svc.seed) is None and not outward(svc))


def wanted(bp: Blueprint, selected: Sequence[str], snapshot: bool | Sequence[str] | None) -> list[str]:
    """The services that use a snapshot: those with ``snapshot:`` in the blueprint; with ``True`` also
    every other selected service ``seeded`` says; with a list exactly those; ``False``: none."""
    if snapshot is False:
        return []
    if snapshot is None or snapshot is True:
        names = [s for s in selected if bp.services[s].snapshot is not None
                 or (snapshot is True and seeded(bp.services[s]))]
        return sorted(names)
    names = list(snapshot)
    for n in names:
        if n not in selected:
            raise UsageError(f"--snapshot {n}: no such service in this run (services: {', '.join(selected)})")
        svc = bp.services[n]
        if svc.kind == "job" or svc.replicas > 1:
            raise UsageError(f"--snapshot {n}: {snapshot_refusal(svc.kind, svc.replicas)}")
        if (i := run_id_seed(getattr(svc, "seed", ()))) is not None:
            raise UsageError(f"--snapshot {n}: seed step {i + 1}: {RUN_ID_REFUSAL}")
        if out := outward(svc):
            raise UsageError(f"--snapshot {n}: seed step {out[0]}: {outward_refusal(svc)}")
    return sorted(set(names))


def passed_over(bp: Blueprint, selected: Sequence[str], snapshot: bool | Sequence[str] | None) -> list[tuple[str, str]]:
    """With ``True`` (``--snapshot``): the seeded services it cannot cover, each with the reason."""
    if snapshot is not True:
        return []
    out = []
    for name in sorted(selected):
        svc = bp.services[name]
        if svc.kind != "stub" and svc.snapshot is None and (svc.seed or svc.initialises) and not seeded(svc):
            i, steps = run_id_seed(svc.seed), outward(svc)
            why = (snapshot_refusal(svc.kind, svc.replicas) if svc.kind == "job" or svc.replicas > 1
                   else f"seed step {i + 1}: {RUN_ID_REFUSAL}" if i is not None
                   else f"seed step {steps[0]} may write into the services it depends on "
                        f"({', '.join(sorted(d.service for d in svc.depends_on))}), which a snapshot of {name} "
                        "cannot hold: its seeds run in every run, and a reset of a service they write into runs "
                        "them again ('writes: own' on a step that writes into the service alone)")
            out.append((name, why))
    return out


def image_ids(backend: Backend, bp: Blueprint, services: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in services:
        svc = bp.services[name]
        tag = image_tag(bp.name, svc.build) if svc.build else str(svc.image)
        ident = backend.image_id(tag)
        if ident is None:
            raise UsageError(f"service {name}: image {tag} is not on the engine")
        out[name] = ident
    return out


def resolve(backend: Backend, bp: Blueprint, pre: Plan, names: Sequence[str], on_event: EventSink,
            deadline: float | None = None) -> dict[str, S.Use]:
    closure = bp.closure(tuple(names))
    images = [s for s in pre.steps if s.action in ("build", "pull") and set(s.services) & set(closure)]
    if images:
        Executor(backend, on_event).run(replace(pre, steps=tuple(images), _index={}))
    keys = S.service_keys(bp, image_ids(backend, bp, closure), names)
    ident = pre.identity
    run_labels = {L.MANAGED: "true", L.RUN: ident.run_id, L.BLUEPRINT: bp.name, L.OWNER: ident.owner,
                  L.CREATED_AT: ident.created_at, L.VERSION: ident.version}
    until = deadline if deadline is not None else time.monotonic() + WAIT
    uses: dict[str, S.Use] = {}
    for name in [n for n in ordered(bp, tuple(names)) if n in names]:  # one order for every process
        key = keys[name]

        def waiting(owner: str, name: str = name, key: str = key) -> None:
            on_event(Event("note", ident.run_id, f"{name}: waiting for snapshot {key[:16]}, which {owner} is "
                                                 "capturing", service=name, detail=owner))

        got = S.acquire(backend, key, run_labels, until, waiting)
        if isinstance(got, S.Snapshot):
            on_event(Event("note", ident.run_id, f"{name}: starting from snapshot {key[:16]} (seeds skipped)",
                           service=name, detail="hit"))
            uses[name] = S.Use(key, snapshot=got)
        else:
            on_event(Event("note", ident.run_id, f"{name}: no snapshot {key[:16]} yet; this run captures it",
                           service=name, detail="miss"))
            uses[name] = S.Use(key, claim=got.volume)
    return uses


def preview(backend: Backend | None, bp: Blueprint, names: Sequence[str]) -> dict[str, S.Use]:
    """What ``up`` would do with each snapshot, for ``envkit plan``: builds nothing, claims nothing.
    A key whose images are all on the engine is looked up (start from it, or capture it); without an
    engine, or with an image still to build, the key is unknown and ``up`` would capture."""
    closure = bp.closure(tuple(names))
    try:
        ids = image_ids(backend, bp, closure) if backend is not None else None
    except UsageError:  # an image is missing: up builds it first, and the key follows from its id
        ids = None
    if ids is None:
        return {name: S.Use(UNKNOWN_KEY) for name in names}
    keys = S.service_keys(bp, ids, names)
    assert backend is not None
    return {name: S.Use(keys[name], snapshot=S.find(backend, keys[name])) for name in names}


class SnapshotsGone(EnvkitError):
    """A snapshot that services of a run were started from went missing while the run came up (its
    image or a data volume removed by another process between the look-up and the create: `envkit
    snapshots rm`, `docker image rm`). ``up`` raises it after its rollback and tries once more, where
    those services miss: they are seeded, and captured again when they ask for a snapshot."""

    def __init__(self, run_id: str, keys: dict[str, str]) -> None:
        self.run_id, self.keys = run_id, keys
        listed = ", ".join(f"{name} ({key[:16]})" for name, key in sorted(keys.items()))
        super().__init__(f"run {run_id}: the snapshots of {listed} went missing while the run started from them "
                         "(removed by another process?)")


def gone(backend: Backend, uses: dict[str, S.Use]) -> dict[str, str]:
    """The services started from a snapshot (service → key) that is no longer complete on the engine."""
    out: dict[str, str] = {}
    for name, use in sorted(uses.items()):
        if use.snapshot is not None:
            try:
                if S.find(backend, use.key) is None:
                    out[name] = use.key
            except EnvkitError:
                continue  # the engine cannot say: not a reason to try again
    return out
