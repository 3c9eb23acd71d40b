"""The Python API: ``up`` a blueprint into an ``Environment``, ``attach`` to a live run, ``down``.

The CLI and the pytest plugin are thin layers over this module.

    with envkit.up("blueprints/shop") as env:
        requests.get(env.url("api", 8080, path="/health"))
        env.outputs["DATABASE_URL"]
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from envkit import __version__, reaper
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends.base import Capability, ContainerState, ExecResult, Protocol
from envkit.blueprint import Blueprint, Probe, load
from envkit.blueprint.model import RunSeed
from envkit.claim import NameInUse, claim, release
from envkit.errors import EngineError, EnvkitError, Interrupted, UsageError
from envkit.events import Event, EventSink, ignore
from envkit.execute import Executor
from envkit.images import image_tag
from envkit.outputs import host_port, resolve, run_document, service_host
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.probes import Outcome, check
from envkit.runs import RunInfo, RunSummary, describe, list_runs, teardown
from envkit.seed_plan import image_key, seed_plan
from envkit.signals import despite_interrupts

__all__ = ["Environment", "ServiceStatus", "attach", "down", "ls", "plan", "seed", "up", "validate"]


def validate(blueprint: str | Path, env: Mapping[str, str] | None = None) -> Blueprint:
    """Load and check a blueprint without touching any engine; raises BlueprintError with every problem."""
    return load(blueprint, env)


def _identity(bp: Blueprint, name: str | None) -> RunIdentity:
    run_id = name or L.new_run_id(bp.name)
    if not L.valid_run_id(run_id):
        raise UsageError(f"invalid run name '{run_id}': use lowercase letters, digits, '.', '_' and '-' (max 63)")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    owner = f"{user}@{socket.gethostname()}:{os.getpid()}"
    return RunIdentity(run_id, owner, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), __version__)


def _check_only(bp: Blueprint, only: tuple[str, ...]) -> None:
    unknown = [s for s in only if s not in bp.services]
    if unknown:
        raise UsageError(f"--only: unknown service {', '.join(unknown)} in {bp.file} "
                         f"(services: {', '.join(sorted(bp.services))})")


def _images(bp: Blueprint, backend: Backend | None, selected: tuple[str, ...],
            seed: bool) -> tuple[dict[str, str], frozenset[str]]:
    """The content tags of the builds (services, and their seeds' ``run`` steps) and the images the engine has."""
    tags = {s: image_tag(bp.name, bp.services[s].build) for s in selected if bp.services[s].build}  # type: ignore[arg-type]
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


def _plan(bp: Blueprint, backend: Backend | None, name: str | None, only: tuple[str, ...], seed: bool = True) -> Plan:
    _check_only(bp, only)
    identity = _identity(bp, name)
    selected = bp.closure(only) if only else tuple(bp.services)
    tags, existing = _images(bp, backend, selected, seed)
    # Offline (no backend): plan as an engine that can do everything would run it.
    capabilities = backend.capabilities if backend is not None else frozenset(Capability)
    return make_plan(bp, identity, existing, tags, only, capabilities=capabilities,
                     engine=backend.name if backend is not None else "engine", seed=seed)


def plan(blueprint: str | Path | Blueprint, *, name: str | None = None, only: tuple[str, ...] = (),
         env: Mapping[str, str] | None = None, backend: Backend | None = None,
         engine: str | None = None, seed: bool = True) -> Plan:
    """What ``up`` would do. Without a backend or an ``engine`` name no engine is asked, and every
    image counts as missing."""
    bp = blueprint if isinstance(blueprint, Blueprint) else load(blueprint, env)
    return _plan(bp, backend or (connect(engine) if engine else None), name, only, seed)


def up(
    blueprint: str | Path | Blueprint,
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
) -> Environment:
    """Bring a blueprint up as a new, isolated run and wait until every service is ready.

    On any failure everything created is removed (unless ``keep_on_failure``) and the error names the
    service at fault. The returned Environment tears the run down when used as a context manager, on
    ``down()``, or at interpreter exit. ``backend``: the engine to use; otherwise ``engine`` (a name
    from ``envkit.backends.ENGINES``) or ``ENVKIT_ENGINE`` chooses one. ``seed=False`` skips every
    service's ``seed:`` steps (``--no-seed``).
    """
    bp = blueprint if isinstance(blueprint, Blueprint) else load(blueprint, env)
    backend = backend or connect(engine)
    the_plan = _plan(bp, backend, name, only, seed)
    run_id = the_plan.run_id
    if backend.list_resources({L.MANAGED: "true", L.RUN: run_id}):
        raise NameInUse(f"run name '{run_id}' is in use: a run of that name exists; choose another --name or "
                        f"`envkit down {run_id}`")
    on_event(Event("plan", run_id, f"run {run_id}: {len(the_plan.steps)} steps", detail=str(len(the_plan.steps))))
    if backend.origin is not None:  # reaper: before the first resource exists (ReaperUnavailable if it cannot start)
        # Only an engine connect() made can be reached again from the watchdog (a hand-made one, e.g. the fake,
        # cannot).
        engine_name, engine_env = backend.origin
        reaper.watch(run_id, {L.OWNER: the_plan.identity.owner, L.CREATED_AT: the_plan.identity.created_at},
                     on_event, {**engine_env, "ENVKIT_ENGINE": engine_name})
    deadline = time.monotonic() + timeout if timeout else None
    executor = Executor(backend, on_event, deadline=deadline)
    try:
        held = claim(backend, run_id, _stamp(bp, the_plan))  # one owner per name, before anything is made
        executor.run(the_plan)
        release(backend, held)
        # Inside the try: an interrupt before the run is in an owned Environment (removed at exit) is rolled back.
        environment = Environment(backend, run_id, owned=True)
        environment.blueprint = bp
    except NameInUse:
        raise  # nothing of ours exists: no rollback (the watchdog, if it ever acts, finds nothing of ours either)
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception)
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
            L.VERSION: i.version}


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
         backend: Backend | None = None, engine: str | None = None) -> dict[str, int]:
    backend = backend or connect(engine)
    ids = [r.run_id for r in list_runs(backend)] if all_runs else list(run_ids or [])
    return teardown(backend, ids, on_event)


def ls(*, backend: Backend | None = None, engine: str | None = None) -> list[RunSummary]:
    return list_runs(backend or connect(engine))


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    container: str
    kind: str
    state: str
    ready: str  # ready | not ready: ... | completed | failed: ...
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
        return resolve(self.info)

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
        return self.backend.exec(self._container(service, replica).id, tuple(command), user)

    def logs(self, service: str | None = None, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        """One service's logs, or every service's with a ``name | `` prefix per line."""
        if service is not None:
            return "".join(self.backend.logs(c.id, tail, since, until) for c in self.info.replicas(service)
                           or [self._container(service)])
        parts = []
        for c in self.info.containers:
            for line in self.backend.logs(c.id, tail, since, until).splitlines():
                parts.append(f"{c.labels.get(L.SERVICE, c.name)} | {line}")
        return "\n".join(parts) + ("\n" if parts else "")

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
            elif not c.running:
                ready = f"not ready: {c.status}" + (f" (exit {c.exit_code})" if c.exit_code is not None else "")
            else:
                probe = _probe_from_label(c.labels.get(L.PROBE, ""))
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

    def detach(self) -> None:
        """Hand the run over: it is no longer removed on ``with`` exit or at interpreter exit."""
        self.owned = False
        _owned.discard(self)
        reaper.release(self.run_id)  # reaper: handed over

    def down(self) -> None:
        """Remove every resource of the run (idempotent)."""
        if self._gone:
            return
        teardown(self.backend, [self.run_id], missing_ok=True)
        reaper.release(self.run_id)  # reaper: nothing left to remove
        self._gone = True
        _owned.discard(self)


def _probe_from_label(text: str) -> Probe | None:
    if not text:
        return None
    try:
        fields = json.loads(text)
        if "command" in fields:
            fields["command"] = tuple(fields["command"])
        return Probe(**fields)
    except (ValueError, TypeError):
        return None



