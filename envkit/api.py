"""The Python API: ``up`` a blueprint into an ``Environment``, ``attach`` to a live run, ``down``.

The CLI and the pytest plugin are thin layers over this module.

    with envkit.up("blueprints/shop") as env:
        requests.get(env.url("api", 8080, path="/health"))
        env.outputs["DATABASE_URL"]
"""

from __future__ import annotations

import functools
import getpass
import inspect
import os
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit import __version__, forensics, gc, reaper, secrets, snapshot_plan
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends.base import Capability
from envkit.blueprint import Blueprint, load
from envkit.blueprint.model import RunSeed
from envkit.claim import NameInUse, claim, claim_name, release
from envkit.engine_lost import during_up as engine_lost_during_up
from envkit.errors import EnvkitError, Interrupted, UsageError, engine_lost
from envkit.events import Event, EventSink, ignore
from envkit.execute import Executor
from envkit.gc import Lifetime
from envkit.images import image_tag, image_tags
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.runs import RunSummary, describe, list_runs, teardown
from envkit.secrets import Secret
from envkit.seed_plan import image_key, seed_plan
from envkit.signals import despite_interrupts
from envkit.snapshots import Use
from envkit.stubs import tls

if TYPE_CHECKING:
    pass

from envkit.environment import Environment, ServiceStatus

__all__ = ["Environment", "ServiceStatus", "attach", "down", "ls", "plan", "seed", "up", "validate"]


#: a blueprint file, a folder holding blueprint.yaml, the same data as a mapping, or a loaded one
BlueprintLike = str | Path | Mapping[str, Any] | Blueprint


def _load(blueprint: BlueprintLike, env: Mapping[str, str] | None, env_files: Sequence[str | Path] | None,
          directory: str | Path | None) -> Blueprint:
    if isinstance(blueprint, Blueprint):
        return blueprint
    if isinstance(blueprint, Mapping):
        # Errors in a mapping have no line to point at: name the caller's line instead.
        caller = inspect.currentframe()
        while caller is not None and caller.f_code.co_filename == __file__:
            caller = caller.f_back
        origin = (f"<mapping from {os.path.basename(caller.f_code.co_filename)}:{caller.f_lineno}>"
                  if caller is not None else "<mapping>")
        return load(blueprint, env, env_files, directory=directory, origin=origin)
    return load(blueprint, env, env_files)


def validate(blueprint: str | Path | Mapping[str, Any], env: Mapping[str, str] | None = None, *,
             env_files: Sequence[str | Path] | None = None, directory: str | Path | None = None) -> Blueprint:
    """Load and check a blueprint without touching any engine; raises BlueprintError with every problem.
    ``env_files``, ``directory``: as for ``up``."""
    return _load(blueprint, env, env_files, directory)


def _identity(bp: Blueprint, name: str | None, ttl: float | None = None, lifetime: Lifetime = "owner") -> RunIdentity:
    run_id = name or L.new_run_id(bp.name)
    if not L.valid_run_id(run_id):
        raise UsageError(f"invalid run name '{run_id}': use lowercase letters, digits, '.', '_' and '-' (max 63)")
    if ttl is not None and not 0 <= ttl <= gc.MAX_TTL:
        raise UsageError(f"ttl {ttl:g}: use 0 (no expiry) to {gc.MAX_TTL:g} seconds")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    owner = f"{user}@{socket.gethostname()}:{os.getpid()}"
    created = datetime.now(UTC).strftime(gc.STAMP_FORMAT)
    return RunIdentity(run_id, owner, created, __version__, gc.expiry(created, ttl), lifetime)


def _check_only(bp: Blueprint, only: tuple[str, ...]) -> None:
    unknown = [s for s in only if s not in bp.services]
    if unknown:
        raise UsageError(f"--only: unknown service {', '.join(unknown)} in {bp.file} "
                         f"(services: {', '.join(sorted(bp.services))})")


def _images(bp: Blueprint, backend: Backend | None, selected: tuple[str, ...],
            seed: bool) -> tuple[dict[str, str], frozenset[str]]:
    """The content tags of the builds (services, and their seeds' ``run`` steps) and the images the engine has."""
    tags = image_tags(bp, selected)  # a context that cannot be read or is too large: BlueprintError
    wanted = set(tags.values()) | {str(bp.services[s].image) for s in selected if bp.services[s].image}
    for s in selected if seed else ():
        for i, item in enumerate(bp.services[s].seed, 1):
            if isinstance(item, RunSeed) and (item.build or item.image):
                tag = image_tag(bp.name, item.build) if item.build else str(item.image)
                if item.build:
                    tags[image_key(s, i)] = tag
                wanted.add(tag)
    if backend is None:
        return tags, frozenset()
    with ThreadPoolExecutor(max_workers=8) as pool:
        return tags, frozenset(t for t, ok in zip(wanted, pool.map(backend.image_exists, wanted), strict=True) if ok)


def _plan(bp: Blueprint, backend: Backend | None, name: str | None, only: tuple[str, ...], seed: bool = True,
          ttl: float | None = None, lifetime: Lifetime = "owner", identity: RunIdentity | None = None,
          snapshots: Mapping[str, Use] | None = None) -> Plan:
    _check_only(bp, only)
    identity = identity or _identity(bp, name, ttl, lifetime)
    selected = bp.closure(only) if only else tuple(bp.services)
    tags, existing = _images(bp, backend, selected, seed)
    # Offline (no backend): plan as an engine that can do everything would run it.
    capabilities = backend.capabilities if backend is not None else frozenset(Capability)
    authority = tls.CertAuthority.new(identity.run_id) if tls.wanted(bp, bp.closure(only) if only else
                                                                      tuple(bp.services)) else None
    return make_plan(bp, identity, existing, tags, only, capabilities=capabilities,
                     engine=backend.name if backend is not None else "engine", seed=seed, snapshots=snapshots,
                     authority=authority)


def plan(blueprint: BlueprintLike, *, name: str | None = None, only: tuple[str, ...] = (),
         env: Mapping[str, str] | None = None, backend: Backend | None = None,
         engine: str | None = None, env_files: Sequence[str | Path] | None = None,
         directory: str | Path | None = None, seed: bool = True,
         snapshot: bool | Sequence[str] | None = None) -> Plan:
    """What ``up`` would do. Without a backend or an ``engine`` name no engine is asked, and every
    image counts as missing. ``snapshot``: as for ``up``; each snapshot service's steps show whether it
    would start from its snapshot (when the engine has it) or capture one after seeding."""
    bp = _load(blueprint, env, env_files, directory)
    backend = backend or (connect(engine) if engine else None)
    the_plan = _plan(bp, backend, name, only, seed)
    names = snapshot_plan.wanted(bp, the_plan.services, snapshot) if seed else []
    if not names:
        return the_plan
    uses = snapshot_plan.preview(backend, bp, names)
    return _plan(bp, backend, name, only, seed, identity=the_plan.identity, snapshots=uses)


def up(
    blueprint: BlueprintLike,
    *,
    name: str | None = None,
    only: tuple[str, ...] = (),
    timeout: float | None = None,
    keep_on_failure: bool = False,
    env: Mapping[str, str] | None = None,
    on_event: EventSink = ignore,
    backend: Backend | None = None,
    engine: str | None = None,
    seed: bool = True,
    env_files: Sequence[str | Path] | None = None,
    directory: str | Path | None = None,
    ttl: float | None = None,
    lifetime: Lifetime = "owner",
    artifacts: str | Path | None = None,
    snapshot: bool | Sequence[str] | None = None,
) -> Environment:
    """Bring a blueprint up as a new, isolated run and wait until every service is ready.

    On any failure everything created is removed (unless ``keep_on_failure``) and the error names the
    service at fault. The returned Environment tears the run down when used as a context manager, on
    ``down()``, or at interpreter exit. ``backend``: the engine to use; otherwise ``engine`` (a name
    from ``envkit.backends.ENGINES``) or ``ENVKIT_ENGINE`` chooses one. ``seed=False`` skips every
    service's ``seed:`` steps (``--no-seed``). ``snapshot``: None as the
    blueprint says (``snapshot:`` keys); True also every seeded service (seed steps, or scripts mounted at
    /docker-entrypoint-initdb.d); a list: those services; False:
    none (see docs/snapshots.md).

    ``blueprint`` may be a path or the same data as a mapping (relative paths in it start from
    ``directory``, else the current folder). ``${VAR}`` reads ``env`` (default: the process environment)
    over ``env_files`` in order; None reads the ``.env`` beside a blueprint file, as Compose does.

    ``ttl`` (seconds; None or 0: none): after it anyone's ``envkit gc`` may remove the run.
    ``lifetime``: "owner" (the run ends with this process: ``envkit gc`` removes it once the process is
    gone) or "detached" (it may be handed over, ``detach()``: only ``down`` or its expiry remove it;
    implied by ``keep_on_failure``). ``artifacts``: a folder; if up fails, a forensics bundle is written
    to ``<artifacts>/<run id>/`` before anything is removed (docs/forensics.md).
    """
    if backend is not None and backend.origin is not None:  # the watchdog's interpreter starts while we load
        reaper.prepare(_watchdog_environment(backend.origin))  # and plan (see _up)
    bp = _load(blueprint, env, env_files, directory)
    if bp.secrets:  # no secret value in an event or an error (docs/security.md)
        on_event = functools.partial(_scrubbed, on_event, bp.secrets)
    if backend is None:
        backend = connect(engine)
        if backend.origin is not None:
            reaper.prepare(_watchdog_environment(backend.origin))
    try:
        attempt = functools.partial(_up, bp, backend, name, only, timeout, keep_on_failure, on_event, seed, ttl,
                                    lifetime, artifacts, snapshot)
        try:
            return attempt()
        except snapshot_plan.SnapshotsGone as missing:  # rolled back: once more, where those services miss
            for svc, key in missing.keys.items():
                on_event(Event("note", missing.run_id, f"{svc}: snapshot {key[:16]} went missing while the run "
                               f"started from it (removed by another process?); seeding {svc} instead",
                               service=svc, detail="snapshot gone"))
            return attempt()
    except BaseException as exc:
        secrets.scrub_error(exc, bp.secrets)
        raise


def _scrubbed(sink: EventSink, hidden: tuple[Secret, ...], event: Event) -> None:
    sink(secrets.scrub_event(event, hidden))


def _up(bp: Blueprint, backend: Backend, name: str | None, only: tuple[str, ...], timeout: float | None,
        keep_on_failure: bool, on_event: EventSink, seed: bool, ttl: float | None, lifetime: Lifetime,
        artifacts: str | Path | None, snapshot: bool | Sequence[str] | None) -> Environment:
    the_plan = _plan(bp, backend, name, only, seed, ttl, "detached" if keep_on_failure else lifetime)
    run_id = the_plan.run_id
    if backend.list_resources({L.MANAGED: "true", L.RUN: run_id}):
        raise NameInUse(f"run name '{run_id}' is in use: a run of that name exists; choose another --name or "
                        f"`envkit down {run_id}`")
    recorder = forensics.Recorder(the_plan, on_event)  # forensics: what this up saw, for a bundle
    # The recorder keeps what it hears for the bundle: it hears it with secrets scrubbed, as everyone does.
    on_event = functools.partial(_scrubbed, recorder, bp.secrets) if bp.secrets else recorder
    if backend.origin is not None:  # reaper: before the first resource exists (ReaperUnavailable if it cannot start)
        # Only an engine connect() made can be reached again from the watchdog (a hand-made one, e.g. the fake,
        # cannot).
        reaper.watch(run_id, {L.OWNER: the_plan.identity.owner, L.CREATED_AT: the_plan.identity.created_at},
                     on_event, _watchdog_environment(backend.origin))
    deadline = time.monotonic() + timeout if timeout else None
    executor = Executor(backend, on_event, deadline=deadline, probes=recorder.probes, seeds=recorder.seeds)
    uses: dict[str, Use] = {}
    try:
        held = claim(backend, run_id, _stamp(bp, the_plan))  # one owner per name, before anything is made
        # Without seeds there is no seeded state to capture or to start from (a key assumes its seeds ran).
        names = snapshot_plan.wanted(bp, the_plan.services, snapshot) if seed else []
        for svc, why in snapshot_plan.passed_over(bp, the_plan.services, snapshot) if seed else ():
            on_event(Event("note", run_id, f"{svc}: seeded, but no snapshot: {why}", service=svc, detail="no snapshot"))
        if names:  # images first (a key holds the image's id), then hit or claim for each key
            uses = snapshot_plan.resolve(backend, bp, the_plan, names, on_event, deadline)
            the_plan = _plan(bp, backend, name, only, seed, identity=the_plan.identity, snapshots=uses)
            recorder.plan = the_plan
        on_event(Event("plan", run_id, f"run {run_id}: {len(the_plan.steps)} steps", detail=str(len(the_plan.steps))))
        executor.run(the_plan)
        release(backend, held)
        # Inside the try: an interrupt before the run is in an owned Environment (removed at exit) is rolled back.
        environment = Environment(backend, run_id, owned=True)
        environment.blueprint = bp
        environment.recorder = recorder
    except NameInUse:
        raise  # nothing of ours exists: no rollback (the watchdog, if it ever acts, finds nothing of ours either)
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception)
        if artifacts is not None and not interrupted:  # forensics: before rollback removes the evidence
            secrets.scrub_error(exc, bp.secrets)
            forensics.write_failure(backend, recorder, exc, Path(artifacts) / run_id, bp)
        if keep_on_failure and not interrupted:
            reaper.release(run_id)  # reaper: kept for inspection, handed over like `envkit up`
            release(backend, claim_name(run_id))  # so that gc does not take it for an `up` that never ended
            on_event(Event("note", run_id, f"kept run {run_id} for inspection; remove it with: envkit down {run_id}"))
        else:
            on_event(Event("rollback", run_id, f"removing what run {run_id} created", phase="start"))
            removed, left = _rollback(backend, the_plan, on_event)
            if isinstance(exc, KeyboardInterrupt):
                what = "was removed" if removed else f"may be left; remove it with: envkit down {run_id}"
                raise Interrupted(f"interrupted; run {run_id} {what}") from None
            lost = None if interrupted else engine_lost(exc) or (engine_lost(left) if left is not None else None)
            if lost is not None:  # the engine went away: say so, not "service x cannot start"
                watched = backend.origin is not None and not reaper.disabled()
                raise engine_lost_during_up(run_id, backend.name, lost, left, watched) from exc
            if removed and not interrupted and (missing := snapshot_plan.gone(backend, uses)):
                raise snapshot_plan.SnapshotsGone(run_id, missing) from exc
        raise
    return environment


def _watchdog_environment(origin: tuple[str, Mapping[str, str]]) -> dict[str, str]:
    """What the watchdog connects to the engine with: the engine connect() was given."""
    engine_name, engine_env = origin
    return {**engine_env, "ENVKIT_ENGINE": engine_name}


def _stamp(bp: Blueprint, the_plan: Plan) -> dict[str, str]:
    i = the_plan.identity
    return {L.MANAGED: "true", L.RUN: i.run_id, L.BLUEPRINT: bp.name, L.OWNER: i.owner, L.CREATED_AT: i.created_at,
            L.VERSION: i.version, L.LIFETIME: i.lifetime, **({L.EXPIRES_AT: i.expires_at} if i.expires_at else {})}


def _rollback(backend: Backend, the_plan: Plan, on_event: EventSink) -> tuple[bool, EnvkitError | None]:
    """Whether the rollback ran to its end, and why it could not remove the run (None: removed)."""
    # By labels, not by the executor's ledger: the sweep also finds what a step was creating when the
    # failure came, which the ledger never saw.
    run_id, identity = the_plan.run_id, the_plan.identity
    # Only what this process created: a same-named run made by another process at the same moment
    # carries another owner or creation time.
    mine = {L.OWNER: identity.owner, L.CREATED_AT: identity.created_at}
    try:
        finished, _ = despite_interrupts(lambda: teardown(backend, [run_id], on_event, missing_ok=True, also=mine))
    except EnvkitError as exc:
        on_event(Event("note", run_id, "rollback incomplete: " + (str(exc).splitlines() or [repr(exc)])[0],
                       detail=str(exc)))
        return False, exc
    return finished, None


def seed(run_id: str, services: tuple[str, ...] = (), *, env: Mapping[str, str] | None = None,
         on_event: EventSink = ignore, backend: Backend | None = None, engine: str | None = None) -> Plan:
    """Run the seed steps of a live run again (of ``services``, or of every service that has them).

    The steps come from the run's blueprint, loaded again from the path its labels name (with ``env``
    for ``${VAR}``). A failing step raises SeedFailed; the run stays as it is. Returns the plan it ran."""
    return seed_steps_again(backend or connect(engine), run_id, services, env=env, on_event=on_event)


def seed_steps_again(backend: Backend, run_id: str, services: tuple[str, ...] = (), *,
                     blueprint: Blueprint | None = None, env: Mapping[str, str] | None = None,
                     on_event: EventSink = ignore, outward_only: bool = False) -> Plan:
    """``seed``, with the run's blueprint when the caller has it (``blueprint``, else loaded from the path
    its labels name); ``outward_only``: only the steps that may write into the services each depends on
    (``envkit.seed_plan.outward``), as a reset of one of those runs them again (``envkit.reset``)."""
    info = describe(backend, run_id)
    if blueprint is None:
        if not info.blueprint_path or not Path(info.blueprint_path).exists():
            raise UsageError(f"run {run_id}: its blueprint {info.blueprint_path or '(unknown)'} is not there any more")
        blueprint = load(info.blueprint_path, env)
    bp = blueprint
    unknown = [s for s in services if s not in bp.services or s not in info.services]
    if unknown:
        raise UsageError(f"run {run_id} has no service {', '.join(unknown)} (services: {', '.join(info.services)})")
    chosen = services or tuple(s for s in bp.services if bp.services[s].seed and s in info.services)
    tags, existing = _images(bp, backend, chosen, True)
    version = info.containers[0].labels.get(L.VERSION, __version__) if info.containers else __version__
    the_plan = seed_plan(bp, RunIdentity(run_id, info.owner, info.created_at, version), chosen, existing, tags,
                         outward_only=outward_only)
    on_event(Event("plan", run_id, f"run {run_id}: {len(the_plan.steps)} seed steps",
                   detail=str(len(the_plan.steps))))
    executor = Executor(backend, on_event)
    executor.ledger.containers.update({c.name: c.id for c in info.containers})
    executor.run(the_plan)
    return the_plan


def attach(run_id: str, *, backend: Backend | None = None, engine: str | None = None) -> Environment:
    """A handle on an existing run (not owned: leaving a ``with`` block does not remove it)."""
    backend = backend or connect(engine)
    environment = Environment(backend, run_id, owned=False)
    environment.refresh()
    return environment


def down(run_ids: list[str] | None = None, *, all_runs: bool = False, on_event: EventSink = ignore,
         backend: Backend | None = None, engine: str | None = None, missing_ok: bool = False,
         include_live: bool = False) -> dict[str, int]:
    """Remove the named runs (one with nothing left raises RunNotFound unless ``missing_ok``), or with
    ``all_runs`` every run, except (unless ``include_live``) those that may belong to another running
    process (``envkit.gc``; a note names them)."""
    backend = backend or connect(engine)
    if not all_runs:
        return teardown(backend, list(run_ids or []), on_event, missing_ok=missing_ok)
    found = gc.survey(backend)
    live_runs = set() if include_live else {g.run_id for g in found.live()}
    if live_runs:
        on_event(Event("note", "", f"left {len(live_runs)} runs that may belong to running processes: "
                                   f"{', '.join(sorted(live_runs))} (--include-live removes them too)"))
    return gc.remove_generations(backend, [g for g in found.runs if g.run_id not in live_runs], on_event)


def ls(*, backend: Backend | None = None, engine: str | None = None) -> list[RunSummary]:
    return list_runs(backend or connect(engine))
