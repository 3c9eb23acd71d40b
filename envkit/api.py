"""The Python API: ``up`` a blueprint into an ``Environment``, ``attach`` to a live run, ``down``.

The CLI and the pytest plugin are thin layers over this module.

    with envkit.up("blueprints/shop") as env:
        requests.get(env.url("api", 8080, path="/health"))
        env.outputs["DATABASE_URL"]
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import getpass
import inspect
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from envkit import __version__, forensics, gc, live, reaper, secrets, snapshot_plan
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends.base import Capability, ContainerState, ExecResult, ExecSession, Protocol
from envkit.blueprint import Blueprint, load
from envkit.blueprint.model import RunSeed
from envkit.claim import NameInUse, claim, release
from envkit.errors import Conflict, EngineError, EnvkitError, Interrupted, UsageError
from envkit.events import Event, EventSink, ignore
from envkit.execute import Executor
from envkit.gc import Lifetime
from envkit.images import image_tag, image_tags
from envkit.live import LiveResult
from envkit.logs import merged
from envkit.outputs import host_port, resolve, run_document, secret_values, service_host, shown
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.probes import Outcome, check, probe_from_label
from envkit.reset import reset as reset_run
from envkit.runs import RunInfo, RunSummary, describe, list_runs, teardown
from envkit.secrets import Secret
from envkit.seed_plan import image_key, seed_plan
from envkit.signals import despite_interrupts
from envkit.snapshots import Use

if TYPE_CHECKING:
    from envkit.faults.apply import FaultRecord
    from envkit.faults.session import ActiveFault, TimelineEntry
from envkit.stopped import reason as stopped_reason
from envkit.stopped import stopped_error
from envkit.stubs.client import StubClient
from envkit.stubs.client import connect as connect_stub

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
    return make_plan(bp, identity, existing, tags, only, capabilities=capabilities,
                     engine=backend.name if backend is not None else "engine", seed=seed, snapshots=snapshots)


def plan(blueprint: BlueprintLike, *, name: str | None = None, only: tuple[str, ...] = (),
         env: Mapping[str, str] | None = None, backend: Backend | None = None,
         engine: str | None = None, env_files: Sequence[str | Path] | None = None,
         directory: str | Path | None = None, seed: bool = True) -> Plan:
    """What ``up`` would do. Without a backend or an ``engine`` name no engine is asked, and every
    image counts as missing."""
    bp = _load(blueprint, env, env_files, directory)
    return _plan(bp, backend or (connect(engine) if engine else None), name, only, seed)


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
    blueprint says (``snapshot:`` keys); True also every seeded service; a list: those services; False:
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
    bp = _load(blueprint, env, env_files, directory)
    if bp.secrets:  # no secret value in an event or an error (docs/security.md)
        on_event = functools.partial(_scrubbed, on_event, bp.secrets)
    backend = backend or connect(engine)
    try:
        return _up(bp, backend, name, only, timeout, keep_on_failure, on_event, seed, ttl, lifetime, artifacts,
                   snapshot)
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
        engine_name, engine_env = backend.origin
        reaper.watch(run_id, {L.OWNER: the_plan.identity.owner, L.CREATED_AT: the_plan.identity.created_at},
                     on_event, {**engine_env, "ENVKIT_ENGINE": engine_name})
    deadline = time.monotonic() + timeout if timeout else None
    executor = Executor(backend, on_event, deadline=deadline, probes=recorder.probes)
    try:
        held = claim(backend, run_id, _stamp(bp, the_plan))  # one owner per name, before anything is made
        # Without seeds there is no seeded state to capture or to start from (a key assumes its seeds ran).
        names = snapshot_plan.wanted(bp, the_plan.services, snapshot) if seed else []
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
            on_event(Event("note", run_id, f"kept run {run_id} for inspection; remove it with: envkit down {run_id}"))
        else:
            on_event(Event("rollback", run_id, f"removing what run {run_id} created", phase="start"))
            removed = _rollback(backend, the_plan, on_event)
            if isinstance(exc, KeyboardInterrupt):
                what = "was removed" if removed else f"may be left; remove it with: envkit down {run_id}"
                raise Interrupted(f"interrupted; run {run_id} {what}") from None
        raise
    return environment


def _stamp(bp: Blueprint, the_plan: Plan) -> dict[str, str]:
    i = the_plan.identity
    return {L.MANAGED: "true", L.RUN: i.run_id, L.BLUEPRINT: bp.name, L.OWNER: i.owner, L.CREATED_AT: i.created_at,
            L.VERSION: i.version, L.LIFETIME: i.lifetime, **({L.EXPIRES_AT: i.expires_at} if i.expires_at else {})}


def _rollback(backend: Backend, the_plan: Plan, on_event: EventSink) -> bool:
    # By labels, not by the executor's ledger: the sweep also finds what a step was creating when the
    # failure came, which the ledger never saw.
    run_id, identity = the_plan.run_id, the_plan.identity
    # Only what this process created: a same-named run made by another process at the same moment
    # carries another owner or creation time.
    mine = {L.OWNER: identity.owner, L.CREATED_AT: identity.created_at}
    try:
        finished, _ = despite_interrupts(lambda: teardown(backend, [run_id], on_event, missing_ok=True, also=mine))
    except EnvkitError as exc:
        on_event(Event("note", run_id, f"rollback incomplete: {exc}", detail=str(exc)))
        return False
    return finished


def seed(run_id: str, services: tuple[str, ...] = (), *, env: Mapping[str, str] | None = None,
         on_event: EventSink = ignore, backend: Backend | None = None, engine: str | None = None) -> Plan:
    """Run the seed steps of a live run again (of ``services``, or of every service that has them).

    The steps come from the run's blueprint, loaded again from the path its labels name (with ``env``
    for ``${VAR}``). A failing step raises SeedFailed; the run stays as it is. Returns the plan it ran."""
    backend = backend or connect(engine)
    info = describe(backend, run_id)
    if not info.blueprint_path or not Path(info.blueprint_path).exists():
        raise UsageError(f"run {run_id}: its blueprint {info.blueprint_path or '(unknown)'} is not there any more")
    bp = load(info.blueprint_path, env)
    unknown = [s for s in services if s not in bp.services or s not in info.services]
    if unknown:
        raise UsageError(f"run {run_id} has no service {', '.join(unknown)} (services: {', '.join(info.services)})")
    chosen = services or tuple(s for s in bp.services if bp.services[s].seed and s in info.services)
    tags, existing = _images(bp, backend, chosen, True)
    version = info.containers[0].labels.get(L.VERSION, __version__) if info.containers else __version__
    the_plan = seed_plan(bp, RunIdentity(run_id, info.owner, info.created_at, version), chosen, existing, tags)
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


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    container: str
    kind: str
    state: str
    ready: str  # ready | not ready: ... | completed | running (a job) | failed: ...

    @property
    def ok(self) -> bool:
        """Ready, or a job that completed."""
        return self.ready in ("ready", "completed")
    ports: dict[str, tuple[str, int]]  # "8080/tcp" -> (host ip, host port): plain data for display and JSON


_owned: weakref.WeakSet[Environment] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_done = False


def _down_owned_at_exit() -> None:
    for environment in list(_owned):
        with contextlib.suppress(EnvkitError):
            environment.down()


class Environment:
    """A live run: its outputs, where its services listen, and how to reach into them."""

    def __init__(self, backend: Backend, run_id: str, owned: bool) -> None:
        self.backend = backend
        self.run_id = run_id
        self.owned = owned
        self.blueprint: Blueprint | None = None
        self.recorder: forensics.Recorder | None = None  # what up() saw, when this process brought it up
        self._info: RunInfo | None = None
        self._gone = False
        if owned:
            global _atexit_done
            with _atexit_lock:
                if not _atexit_done:
                    atexit.register(_down_owned_at_exit)
                    _atexit_done = True
            _owned.add(self)

    def __repr__(self) -> str:
        return f"<Environment {self.run_id}{' (removed)' if self._gone else ''}>"

    # -- context manager ----------------------------------------------------------------------------
    def __enter__(self) -> Environment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.owned:
            self.down()

    # -- what the run is ------------------------------------------------------------------------------
    def refresh(self) -> RunInfo:
        self._info = describe(self.backend, self.run_id)
        return self._info

    @property
    def info(self) -> RunInfo:
        return self._info or self.refresh()

    @property
    def outputs(self) -> dict[str, str]:
        return resolve(self.info, secret=self._secrets())

    @property
    def shown_outputs(self) -> dict[str, str]:
        """The outputs as a person may see them: secrets masked (``envkit.outputs.shown``)."""
        return shown(self.info, self.outputs)

    def _secrets(self) -> dict[str, str]:
        # In the process that loaded the blueprint, its values; elsewhere, read back (docs/security.md).
        return secret_values(self.info, self.blueprint.secrets if self.blueprint else (), os.environ)

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.info.services)

    def document(self) -> dict[str, object]:
        """The JSON hand-off document (schema envkit.run/v1)."""
        return run_document(self.info, self.outputs)

    def _container(self, service: str, replica: int = 1) -> ContainerState:
        replicas = self.info.replicas(service)
        if not replicas:
            raise UsageError(f"run {self.run_id} has no service '{service}' "
                             f"(services: {', '.join(self.info.services)})")
        if not 1 <= replica <= len(replicas):
            raise UsageError(f"service {service} has {len(replicas)} replicas; no replica {replica}")
        return replicas[replica - 1]

    def host(self, service: str) -> str:
        """Where this machine reaches the service's published ports (as ``${services.<name>.host}``)."""
        self._container(service)
        return service_host(self.info, service)

    def port(self, service: str, container_port: int, protocol: Protocol = "tcp") -> int:
        return host_port(self.info, service, container_port, protocol)[1]

    def url(self, service: str, container_port: int, scheme: str = "http", path: str = "") -> str:
        host, port = host_port(self.info, service, container_port)
        return f"{scheme}://{host}:{port}{path}"

    # -- reaching in ----------------------------------------------------------------------------------
    def exec(self, service: str, command: list[str] | tuple[str, ...], replica: int = 1,
             user: str | None = None) -> ExecResult:
        """Run a command in a replica of ``service``; ServiceFailed (by service name) if it has stopped."""
        container = self._running(service, replica)
        try:
            return self.backend.exec(container.id, tuple(command), user)
        except Conflict:  # stopped since it was last looked at
            self._running(service, replica, fresh=True)
            raise

    def exec_stream(self, service: str, command: list[str] | tuple[str, ...], *, stdin: int | None,
                    stdout: BinaryIO, stderr: BinaryIO, tty: bool = False, replica: int = 1,
                    user: str | None = None) -> ExecSession:
        """Start a command in a replica of ``service`` with its streams attached (``Backend.exec_stream``:
        stdin from a file descriptor, output as it comes, a terminal with ``tty``); ``wait()`` on the
        session gives its exit code. ServiceFailed (by service name) if the service has stopped."""
        container = self._running(service, replica)
        try:
            return self.backend.exec_stream(container.id, tuple(command), stdin=stdin, stdout=stdout,
                                            stderr=stderr, tty=tty, user=user)
        except Conflict:
            self._running(service, replica, fresh=True)
            raise

    def stub(self, service: str, replica: int = 1) -> StubClient:
        """Control of a ``kind: stub`` service: its journal, run-time responses, reset (docs/stubs.md)."""
        return connect_stub(self, service, replica)

    def _running(self, service: str, replica: int = 1, fresh: bool = False) -> ContainerState:
        """The replica's container, raising ServiceFailed by service name if it is not running."""
        if fresh:
            self.refresh()
        container = self._container(service, replica)
        dead = stopped_error(self.run_id, service, [container], "cannot run a command in it")
        if dead is not None:
            raise dead
        return container

    def logs(self, service: str | None = None, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        """One service's logs, or every service's interleaved by time, with a ``name | `` prefix per line."""
        if service is not None:
            return "".join(self.backend.logs(c.id, tail, since, until) for c in self.info.replicas(service)
                           or [self._container(service)])
        # Every service's lines interleaved by time (envkit.logs), each named by its service.
        return "".join(f"{e.line()}\n" for e in merged(self.backend, self.info, (), tail, since, until))

    def follow(self, service: str, tail: int | None = None, replica: int = 1) -> Iterator[str]:
        """New output of one replica as it comes (blocks; stop by closing the iterator)."""
        return self.backend.follow_logs(self._container(service, replica).id, tail)

    def status(self) -> list[ServiceStatus]:
        info = self.refresh()
        out = []
        for c in info.containers:
            kind = c.labels.get(L.KIND, "service")
            if kind == "job":
                ready = "completed" if c.exit_code == 0 else (
                    f"failed: exit {c.exit_code}" if c.exit_code is not None else "running")
            elif (why := stopped_reason(c)) is not None:
                ready = f"failed: {why}"
            elif not c.running:
                ready = f"not ready: {c.status}"
            else:
                probe = probe_from_label(c.labels.get(L.PROBE, ""), self._secrets())
                try:
                    outcome, detail = check(self.backend, c, probe)  # c was just inspected (refresh)
                except EngineError as exc:
                    outcome, detail = Outcome.NOT_YET, str(exc)
                ready = "ready" if outcome is Outcome.READY else f"not ready: {detail}"
            ports = {str(key): (bound.host_ip, bound.port) for key, bound in sorted(c.ports.items())}
            out.append(ServiceStatus(c.labels.get(L.SERVICE, "?"), c.name, kind, c.status, ready, ports))
        return out

    def seed(self, *services: str, on_event: EventSink = ignore) -> None:
        """Run the seed steps of these services (default: every service that has them) again."""
        seed(self.run_id, services, on_event=on_event, backend=self.backend)

    # -- working on the live run (envkit.live) ------------------------------------------------------------
    def stop(self, *services: str, timeout: float | None = None, on_event: EventSink = ignore) -> LiveResult:
        """Stop services (every service when none is named), dependants first; the containers are kept.
        ``timeout``: seconds to wait after the stop signal before killing (default: the service's
        ``stop_grace_period``, else 10)."""
        return self._live(live.lifecycle(self.backend, self.run_id, "stop", services, on_event=on_event,
                                         timeout=timeout))

    def start(self, *services: str, timeout: float | None = None, on_event: EventSink = ignore) -> LiveResult:
        """Start services again, dependencies first, and wait until each is ready."""
        return self._live(live.lifecycle(self.backend, self.run_id, "start", services, on_event=on_event,
                                         timeout=timeout))

    def restart(self, *services: str, timeout: float | None = None, on_event: EventSink = ignore) -> LiveResult:
        """Stop, then start services, in dependency order, and wait until they are ready again."""
        return self._live(live.lifecycle(self.backend, self.run_id, "restart", services, on_event=on_event,
                                         timeout=timeout))

    def rebuild(self, *services: str, blueprint: str | Path | None = None, env: Mapping[str, str] | None = None,
                timeout: float | None = None, on_event: EventSink = ignore) -> LiveResult:
        """Rebuild services' images from the blueprint and replace their containers, keeping their names,
        DNS aliases and host ports; their dependants keep running. None named: those whose build changed."""
        return self._live(live.rebuild(self.backend, self.run_id, services, blueprint=blueprint or self._source(),
                                       env=env, timeout=timeout, on_event=on_event))

    def _source(self) -> Path | None:
        return self.blueprint.file if self.blueprint is not None else None

    def _live(self, result: LiveResult) -> LiveResult:
        self._info = result.info
        return result

    def collect(self, directory: str | Path, *, reason: str = "") -> Path:
        """Write a forensics bundle of the run (logs, inspect data, probe history, plan timing, events,
        SUMMARY.txt) into ``directory``; ``reason`` heads the summary. Returns the folder."""
        timeline = "\n".join(map(str, self.faults()))
        return forensics.write_live(self.backend, self.run_id, Path(directory), blueprint=self.blueprint,
                                    recorder=self.recorder, reason=reason, faults=timeline)

    def detach(self) -> None:
        """Hand the run over: it is no longer removed on ``with`` exit or at interpreter exit. Its labels
        still say lifetime "owner" unless up() was given ``lifetime="detached"``: then ``envkit gc``
        removes it once this process is gone."""
        self.owned = False
        _owned.discard(self)
        reaper.release(self.run_id)  # reaper: handed over

    def reset(self, *services: str, on_event: EventSink = ignore, path: str | None = None) -> dict[str, float]:
        """Put services (default: every one with a snapshot) back to their seeded state while the rest
        of the run goes on; returns the seconds each took. ``path="restore"`` forces the generic path
        where the fast one would apply (see docs/snapshots.md)."""
        taken = reset_run(self.backend, self.run_id, services, blueprint=self.blueprint, on_event=on_event,
                          path=path)
        self._info = None
        return taken

    # -- faults (envkit/faults, docs/faults.md) --------------------------------------------------------
    def fault(self, service: str, kind: str | None = None, *, duration: float | None = None,
              seed: int | None = None, **params: Any) -> ActiveFault:
        """Apply a fault to ``service`` (``env.fault("db", "latency", latency="200ms")``), or a scenario of
        the blueprint's ``faults:`` by name (``env.fault("db-slow")``). As a context manager it heals on
        exit, also when the block fails; ``duration`` (seconds) heals it by a timer."""
        from envkit.faults import session
        return session.fault(self, service, kind, params, duration=duration, seed=seed)

    def heal(self, service: str | None = None) -> list[FaultRecord]:
        """Undo every fault on the run (or on one service), those of other processes too."""
        from envkit.faults import session
        return session.heal(self, service)

    def faults(self) -> list[TimelineEntry]:
        """The fault timeline: what this process applied and healed, and what is still applied, by time."""
        from envkit.faults import session
        return session.timeline(self)

    def down(self) -> None:
        """Remove every resource of the run (idempotent)."""
        if self._gone:
            return
        teardown(self.backend, [self.run_id], missing_ok=True)
        reaper.release(self.run_id)  # reaper: nothing left to remove
        self._gone = True
        _owned.discard(self)

