"""Putting a service of a live run back to its seeded state, while the rest of the run keeps working.

Two paths (docs/snapshots.md says which service gets which, and why):

- **template** (PostgreSQL, chosen when the snapshot was captured): inside the running server, each
  database is swapped for a ready copy of the template database captured with it
  (``envkit.pgtemplate``), through a ``psql`` this process keeps in the container
  (``envkit.pgsession``; a one-shot exec where the engine has no interactive exec). Milliseconds; the
  container, its address and its ports stay.
- **restore** (any service with a snapshot, ``envkit.restore``): a new container from the snapshot —
  its image, every volume it mounts refilled from the snapshot — replaces the old one with the same
  name, DNS aliases, host ports and address, then is waited ready. Dependants see the service restart
  and must reconnect, as after any restart.

A reset only ever touches the named run's own containers and volumes: the snapshot is read, not changed.

A service's snapshot holds its own seeds' writes, not those of its dependants' seeds (an ``http`` step of
the API, a fixture loader's ``run`` step), which run after the capture. The run's container names those
dependants (``io.envkit.reseed``, from the plan): after the reset their steps that may write into it run
again, once for the services reset together, dependencies first (docs/snapshots.md#seeds-of-dependants).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from envkit import labels as L
from envkit import pgsession
from envkit import snapshots as S
from envkit.backends.base import Backend, Capability, ContainerState
from envkit.blueprint import Blueprint, load
from envkit.capture import postgres_of
from envkit.errors import Conflict, EnvkitError, NotFound, RunNotFound, UsageError
from envkit.events import Event, EventSink, ignore
from envkit.images import image_tag
from envkit.pgtemplate import Postgres
from envkit.plan import RunIdentity, make_plan
from envkit.restore import Recipe, recipe_of, replaced, restore, successor
from envkit.runs import RunInfo, describe
from envkit.snapshot_plan import image_ids

__all__ = ["reset"]


def reset(backend: Backend, run_id: str, services: Sequence[str] = (), *, blueprint: Blueprint | None = None,
          env: Mapping[str, str] | None = None, on_event: EventSink = ignore,
          path: str | None = None, keep_session: bool = True) -> dict[str, float]:
    """Reset ``services`` of run ``run_id`` (default: every service that has a snapshot), then run again
    the seed steps of their dependants that may write into them (``_reseed``); returns the seconds each
    reset took (the steps' events carry theirs). ``blueprint``: the run's, as loaded by ``up`` (else it is loaded again from the
    path the run records, with ``env``) — needed by the restore path only. ``path``: force "restore".
    ``keep_session``: keep a ``psql`` in the container for the next reset (False for a process that
    resets once and exits, as ``envkit reset``: a one-shot exec, whose refill outlives the process)."""
    fast = _fast(backend, run_id, services, on_event) if path != "restore" and keep_session else None
    if fast is None:
        fast = _again(backend, run_id, services, path, on_event)
    if fast is not None:
        taken = fast
    else:
        taken, restored = _reset(backend, run_id, services, blueprint, env, on_event, path, keep_session)
        if restored:
            _faults_back(backend, run_id, on_event)
    _reseed(backend, run_id, list(taken), blueprint, env, on_event)
    return taken


#: (run, service) -> the dependants whose seeds may write into it (its container's io.envkit.reseed)
_writers: dict[tuple[str, str], tuple[str, ...]] = {}


def _note_writers(run_id: str, name: str, labels: Mapping[str, str]) -> None:
    _writers[(run_id, name)] = tuple(w for w in labels.get(L.RESEED, "").split(",") if w)


def _reseed(backend: Backend, run_id: str, names: Sequence[str], blueprint: Blueprint | None,
            env: Mapping[str, str] | None, on_event: EventSink) -> None:
    """The seed steps of the dependants that may have written into the reset services ``names``, again:
    the reset took their writes away with everything else since the capture. Each dependant's steps run
    once however many of the services it may write into were reset, and only those (``outward``): its
    ``copy`` and ``sql`` steps acted on its own container, which the reset did not touch."""
    from envkit.api import seed_steps_again  # api imports this module

    wanted = sorted({w for n in names for w in _writers.get((run_id, n), ()) if w not in names})
    if not wanted:
        return
    reset_ones = sorted(n for n in names if _writers.get((run_id, n)))
    on_event(Event("note", run_id, f"{', '.join(wanted)}: the seed steps that may write into "
                                   f"{', '.join(reset_ones)} run again after the reset", detail="reseed"))
    try:
        seed_steps_again(backend, run_id, tuple(wanted), blueprint=blueprint, env=env, on_event=on_event,
                         outward_only=True)
    except EnvkitError as exc:
        # The reset itself is done: say so, or the user reads "seed step … failed" (or "its blueprint is not
        # there any more") as the reset of db having failed, and resets it again.
        exc.args = (f"{exc}\n  ({', '.join(reset_ones)} reset; then the seed steps of {', '.join(wanted)} that may "
                    f"write into {'them' if len(reset_ones) > 1 else 'it'} ran again, and this one failed: "
                    "what they wrote is missing until they run again, docs/snapshots.md#seeds-of-dependants)",)
        raise


def _reset(backend: Backend, run_id: str, services: Sequence[str], blueprint: Blueprint | None,
           env: Mapping[str, str] | None, on_event: EventSink, path: str | None,
           keep_session: bool) -> tuple[dict[str, float], bool]:
    info = describe(backend, run_id)
    names = list(services) or [s for s in info.services if _key(info, s)]
    if not names:
        raise UsageError(f"run {run_id} has no service started with a snapshot; add 'snapshot: true' to the "
                         "service (or `envkit up --snapshot`) to be able to reset it (a run brought up with "
                         "--no-snapshot or --no-seed has none)")
    # Every named service is checked before any is reset, its snapshot found and what a restore makes of it
    # known: a refusal leaves the run as it was (not one service reset without the seeds of its dependants
    # run again).
    for name in names:
        if not info.replicas(name):
            raise UsageError(f"run {run_id} has no service '{name}' (services: {', '.join(info.services)})")
        if not _key(info, name):
            raise UsageError(f"service {name} of run {run_id} was not started with a snapshot, so it has no "
                             "seeded state to go back to (add 'snapshot: true' to it; a run brought up with "
                             "--no-snapshot or --no-seed has none either)")
    chosen: list[tuple[str, ContainerState, S.Snapshot, tuple[Postgres, list[str]] | None, Recipe | None]] = []
    for name in names:
        key = _key(info, name)
        snap = S.find(backend, key)
        if snap is None:
            raise RunNotFound(f"snapshot {key[:16]} of service {name} is gone (removed with `envkit snapshots "
                              "rm/prune`?); start a new run to capture it again")
        container = info.replicas(name)[0]
        pg = postgres_of(snap)
        template = pg is not None and path != "restore" and container.running
        chosen.append((name, container, snap, pg, None if template else
                       _recipe_for(backend, info, blueprint, env, name, container, snap)))
    taken: dict[str, float] = {}
    restored = False
    for name, container, snap, pg, recipe in chosen:
        began = time.monotonic()
        _known[(run_id, name)] = (snap, container.id)
        _note_writers(run_id, name, container.labels)
        on_event(Event("step", run_id, f"reset {name}", phase="start", action="reset", service=name))
        if recipe is None:
            assert pg is not None
            try:
                pgsession.swap(backend, container.id, *pg, keep=keep_session)
                how = "template databases"
            except EnvkitError:
                if not _replaced_by_restore(backend, container, pg[0]):
                    raise
                how = "made again from the snapshot by another process's reset meanwhile"
        else:
            parts = _restore(backend, recipe, container.id)
            how, restored = "restored from the snapshot", True
        taken[name] = time.monotonic() - began
        done = f" ({how}: {parts})" if how.startswith("restored") else f" ({how})"
        on_event(Event("step", run_id, f"{name} reset in {taken[name]:.2f}s{done}", phase="done", action="reset",
                       service=name, duration=taken[name], detail=how))
    return taken, restored


def _faults_back(backend: Backend, run_id: str, on_event: EventSink) -> None:
    """A restore-path reset replaced the service's container: the faults applied to it are put on the new
    one before ``reset`` returns, as after a restart (docs/faults.md), so they stay in force until healed."""
    from envkit.faults.follow import reconcile

    for f in reconcile(backend, run_id):
        on_event(Event("note", run_id, f"fault {f.id} ({f.describe()}) applied again to the reset replica",
                       service=f.service, detail="fault re-applied"))


def _replaced_by_restore(backend: Backend, old: ContainerState, pg: Postgres, timeout: float = 60.0) -> bool:
    """Whether a template swap failed because another process's restore-path reset (`envkit reset
    --restore`, a test's ``env.reset(path="restore")``) removed the container under it — its psql killed,
    exit code 137. Then the service's new container from the same snapshot is the seeded state: wait until
    its server answers."""
    def answers(container: str) -> bool:
        with contextlib.suppress(EnvkitError):
            return pg.run(backend, container, "SELECT 1;").exit_code == 0
        return False

    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = successor(backend, old.name, old.labels, old.id)
        if found is not None:
            if answers(found):
                return True
        else:
            try:
                alive = backend.inspect_container(old.id).running
            except NotFound:
                alive = False
            if alive and answers(old.id):
                return False  # still there and serving: the swap itself failed
        time.sleep(0.2)
    return False


def _again(backend: Backend, run_id: str, services: Sequence[str], path: str | None,
           on_event: EventSink) -> dict[str, float] | None:
    """The restore path without describing the run, for services this process has reset that way
    before; None when it cannot be sure (the caller then takes the full way)."""
    chosen: list[tuple[str, Recipe, ContainerState]] = []
    for name in services:
        cached, known = _recipes.get((run_id, name)), _known.get((run_id, name))
        if cached is None or known is None or cached[0] != known[0].key:
            return None
        if postgres_of(known[0]) is not None and path != "restore":
            return None
        listed = [c for c in backend.list_containers({L.MANAGED: "true", L.RUN: run_id, L.SERVICE: name})
                  if c.name == cached[1].spec.name]
        if len(listed) != 1 or listed[0].labels.get(L.SNAPSHOT) != known[0].key:
            return None
        _note_writers(run_id, name, listed[0].labels)
        chosen.append((name, cached[1], listed[0]))
    taken: dict[str, float] = {}
    for name, recipe, container in chosen:
        began = time.monotonic()
        on_event(Event("step", run_id, f"reset {name}", phase="start", action="reset", service=name))
        parts = _restore(backend, recipe, container.id)
        taken[name] = time.monotonic() - began
        on_event(Event("step", run_id, f"{name} reset in {taken[name]:.2f}s (restored from the snapshot: {parts})",
                       phase="done", action="reset", service=name, duration=taken[name],
                       detail="restored from the snapshot"))
    if taken:
        _faults_back(backend, run_id, on_event)
    return taken or None


#: (run, service) -> the snapshot of its last reset in this process and the container it was reset in.
#: A snapshot's manifest never changes, and the template path needs nothing but it (the templates live
#: inside the run's own server).
_known: dict[tuple[str, str], tuple[S.Snapshot, str]] = {}


def _fast(backend: Backend, run_id: str, services: Sequence[str], on_event: EventSink) -> dict[str, float] | None:
    """The template path without describing the whole run, when this process has reset these services
    before; None when it cannot be sure (the caller then takes the full way). A live kept session is
    proof enough that the container is the one reset last time and still runs (it ends with it)."""
    chosen: list[tuple[str, str, Postgres, list[str]]] = []
    for name in services:
        snap, container = _known.get((run_id, name), (None, ""))
        pg = postgres_of(snap) if snap is not None else None
        if snap is None or pg is None:
            return None
        if not pgsession.kept(container):
            listed = backend.list_containers({L.MANAGED: "true", L.RUN: run_id, L.SERVICE: name})
            if len(listed) != 1 or not listed[0].running or listed[0].labels.get(L.SNAPSHOT) != snap.key:
                return None
            container = listed[0].id
            _known[(run_id, name)] = (snap, container)
            _note_writers(run_id, name, listed[0].labels)
        chosen.append((name, container, *pg))
    taken: dict[str, float] = {}
    for name, container, pg_, databases in chosen:
        began = time.monotonic()
        on_event(Event("step", run_id, f"reset {name}", phase="start", action="reset", service=name))
        try:
            pgsession.swap(backend, container, pg_, databases)
        except (NotFound, Conflict):
            return None  # gone or stopped since: the full way finds out what is there (a second reset is harmless)
        taken[name] = time.monotonic() - began
        on_event(Event("step", run_id, f"{name} reset in {taken[name]:.2f}s (template databases)", phase="done",
                       action="reset", service=name, duration=taken[name], detail="template databases"))
    return taken or None  # no service named: the caller finds every one with a snapshot


def _key(info: RunInfo, service: str) -> str:
    replicas = info.replicas(service)
    return replicas[0].labels.get(L.SNAPSHOT, "") if replicas else ""


#: (run, service) -> the snapshot key and what its resets make (the same at every reset of that run)
_recipes: dict[tuple[str, str], tuple[str, Recipe]] = {}


def _recipe_for(backend: Backend, info: RunInfo, bp: Blueprint | None, env: Mapping[str, str] | None, name: str,
                old: ContainerState, snap: S.Snapshot) -> Recipe:
    for capability in (Capability.EXPORT_FILESYSTEM, Capability.EXPORT_VOLUME):
        backend.require(capability, f"reset of {name}")
    cached = _recipes.get((info.run_id, name))
    if cached is not None and cached[0] == snap.key:
        return cached[1]
    recipe = _recipe(backend, info, bp or load(info.blueprint_path, env), name, old, snap)
    _recipes[(info.run_id, name)] = (snap.key, recipe)
    return recipe


def _restore(backend: Backend, recipe: Recipe, old: str) -> str:
    timings: dict[str, float] = {}
    try:
        state = backend.inspect_container(old)  # inspected: addresses, volumes
    except NotFound:
        # Listed a moment ago, gone now: another process's reset (`envkit reset`, another test process) took it.
        if replaced(backend, recipe, old) is None:
            raise
        return "made by another process's reset meanwhile"
    restore(backend, recipe, state, timings=timings)
    return ", ".join(f"{part} {seconds:.2f}s" for part, seconds in timings.items())


def _recipe(backend: Backend, info: RunInfo, bp: Blueprint, name: str, old: ContainerState,
            snap: S.Snapshot) -> Recipe:
    if name not in bp.services:
        raise UsageError(f"the blueprint {bp.file} has no service '{name}' any more; cannot reset it")
    closure = bp.closure((name,))
    key = S.service_keys(bp, image_ids(backend, bp, closure), [name])[name]
    if key != snap.key:
        raise UsageError(f"service {name}: the blueprint, its files or its variables changed since run {info.run_id} "
                         "started (its snapshot key differs); reset it from the process that started it "
                         "(Environment.reset) or start a new run")
    labels = old.labels
    identity = RunIdentity(info.run_id, labels.get(L.OWNER, ""), labels.get(L.CREATED_AT, ""),
                           labels.get(L.VERSION, ""))
    tags = {s: image_tag(bp.name, bp.services[s].build) for s in closure if bp.services[s].build}  # type: ignore[arg-type]
    every = frozenset(tags.values()) | {str(bp.services[s].image) for s in closure} | {snap.image}
    plan = make_plan(bp, identity, every, tags, (name,), capabilities=backend.capabilities, engine=backend.name,
                     snapshots={name: S.Use(key, snapshot=snap)})
    recipe = recipe_of(name, plan.steps, frozenset(bp.volumes))
    # This run's own labels (the plan's carry this process's view of the run).
    return replace(recipe, spec=replace(recipe.spec, labels=tuple(sorted(labels.items()))))
