"""``Environment``: the handle on a live run that ``envkit.up`` returns and ``envkit.attach`` makes —
its outputs, where its services listen, how to reach into them, and the work done on it (seed, live
changes, faults, stubs, reset, forensics). Runs a process owns are removed at interpreter exit."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from envkit import forensics, live, reaper, secrets
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import ContainerState, ExecResult, ExecSession, Protocol
from envkit.blueprint import Blueprint
from envkit.errors import Conflict, EngineError, EnvkitError, NotFound, UsageError
from envkit.events import EventSink, ignore
from envkit.live import LiveResult
from envkit.logs import merged
from envkit.outputs import Outputs, host_port, resolve_each, run_document, secret_values, service_host, shown
from envkit.probes import Outcome, check, probe_from_label
from envkit.reset import reset as reset_run
from envkit.runs import RunInfo, describe, teardown
from envkit.secrets import Secret

if TYPE_CHECKING:
    from envkit.faults.apply import FaultRecord
    from envkit.faults.session import ActiveFault, TimelineEntry
from envkit.stopped import reason as stopped_reason
from envkit.stopped import stopped_error
from envkit.stubs.client import StubClient
from envkit.stubs.client import connect as connect_stub

__all__ = ["Environment", "ServiceStatus"]


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


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _scrubbing(method: F) -> F:
    """Errors of a method that reaches into the run (a probe's or a command's text, log tails) lose the
    run's secret values before anyone sees them."""
    @functools.wraps(method)
    def wrapper(self: Environment, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except EnvkitError as exc:
            secrets.scrub_error(exc, self.hidden())
            raise

    return cast(F, wrapper)


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
    def outputs(self) -> Outputs:
        """The outputs by name; one whose service has died raises when read, the others do not (``Outputs``)."""
        return resolve_each(self.info, secret=self._secrets())

    @property
    def shown_outputs(self) -> dict[str, str]:
        """The outputs as a person may see them: secrets masked (``envkit.outputs.shown``)."""
        return shown(self.info, self.outputs)

    def _secrets(self) -> dict[str, str]:
        # In the process that loaded the blueprint, its values; elsewhere, read back (docs/security.md).
        return secret_values(self.info, self.blueprint.secrets if self.blueprint else (), os.environ)

    def hidden(self) -> tuple[Secret, ...]:
        """The run's secret values, found as the outputs find them (the blueprint's in the process that
        loaded it, else read back from the containers that hold them): what ``scrub`` hides."""
        try:
            return tuple(Secret(name, value) for name, value in self._secrets().items())
        except EnvkitError:
            return ()

    def scrub(self, text: str) -> str:
        """``text`` with every secret value of the run replaced by ``****`` (docs/security.md)."""
        return secrets.redact(text, self.hidden())

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
    @_scrubbing
    def exec(self, service: str, command: list[str] | tuple[str, ...], replica: int = 1,
             user: str | None = None) -> ExecResult:
        """Run a command in a replica of ``service``; ServiceFailed (by service name) if it has stopped."""
        return self._on_replica(service, replica, lambda c: self.backend.exec(c, tuple(command), user))

    @_scrubbing
    def exec_stream(self, service: str, command: list[str] | tuple[str, ...], *, stdin: int | None,
                    stdout: BinaryIO, stderr: BinaryIO, tty: bool = False, replica: int = 1,
                    user: str | None = None) -> ExecSession:
        """Start a command in a replica of ``service`` with its streams attached (``Backend.exec_stream``:
        stdin from a file descriptor, output as it comes, a terminal with ``tty``); ``wait()`` on the
        session gives its exit code. ServiceFailed (by service name) if the service has stopped."""
        return self._on_replica(service, replica, lambda c: self.backend.exec_stream(
            c, tuple(command), stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, user=user))

    def stub(self, service: str, replica: int = 1) -> StubClient:
        """Control of a ``kind: stub`` service: its journal, run-time responses, reset (docs/stubs.md)."""
        return connect_stub(self, service, replica)

    def _on_replica(self, service: str, replica: int, call: Callable[[str], T]) -> T:
        """``call(container id)`` on the replica's running container. A container gone since it was last
        looked at was replaced (a reset on the restore path or a rebuild, by another process, xdist worker
        or handle): look again and call the new one. One stopped meanwhile is a ServiceFailed by name."""
        fresh = False
        while True:
            container = self._running(service, replica, fresh=fresh)
            try:
                return call(container.id)
            except NotFound:
                if fresh:
                    raise
                fresh = True
            except Conflict:  # stopped since it was last looked at
                self._running(service, replica, fresh=True)
                raise

    def _running(self, service: str, replica: int = 1, fresh: bool = False) -> ContainerState:
        """The replica's container, raising ServiceFailed by service name if it is not running. A stopped
        one seen in an earlier look is looked at again first: it may run since (a fault healed, a start by
        another process or handle)."""
        if fresh:
            self.refresh()
        container = self._container(service, replica)
        dead = stopped_error(self.run_id, service, [container], "cannot run a command in it")
        if dead is not None and not fresh:
            return self._running(service, replica, fresh=True)
        if dead is not None:
            raise dead
        return container

    @_scrubbing
    def logs(self, service: str | None = None, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        """One service's logs, or every service's interleaved by time, with a ``name | `` prefix per line."""
        def read() -> str:
            if service is not None:
                return "".join(self.backend.logs(c.id, tail, since, until) for c in self.info.replicas(service)
                               or [self._container(service)])
            # Every service's lines interleaved by time (envkit.logs), each named by its service.
            return "".join(f"{e.line()}\n" for e in merged(self.backend, self.info, (), tail, since, until))

        try:
            return read()
        except NotFound:  # a container replaced since it was last looked at (see _on_replica)
            self.refresh()
            return read()

    def follow(self, service: str, tail: int | None = None, replica: int = 1) -> Iterator[str]:
        """New output of one replica as it comes (blocks; stop by closing the iterator)."""
        return self.backend.follow_logs(self._container(service, replica).id, tail)

    @_scrubbing
    def status(self) -> list[ServiceStatus]:
        self._follow_faults()
        info = self.refresh()
        hidden = self.hidden()
        out = []
        held = self._held_by_faults(info)
        for c in info.containers:
            kind = c.labels.get(L.KIND, "service")
            if c.lost:  # its node went down (a distributed engine): neither running nor exited
                ready = f"failed: {c.lost}"
            elif not c.running and c.id in held:  # down on purpose: not ready, but no failure
                ready = f"not ready: {held[c.id]}"
            elif kind == "job":
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
            ready = secrets.redact(ready, hidden)  # a probe's output may quote its command, password and all
            out.append(ServiceStatus(c.labels.get(L.SERVICE, "?"), c.name, kind, c.status, ready, ports))
        return out

    def _held_by_faults(self, info: RunInfo) -> dict[str, str]:
        """Container id -> why it is down, for the replicas an active stop/kill/pause fault holds (any process's)
        in the state it put them in (a paused replica stopped since is no longer held by its pause)."""
        from envkit.faults.apply import faults

        verb = {"stop": ("stopped", ("exited", "dead")), "kill": ("killed", ("exited", "dead")),
                "pause": ("paused", ("paused",))}
        status = {c.id: c.status for c in info.containers}
        return {str(u["container"]): f"{verb[f.kind][0]} by fault {f.id} (heal it with `envkit heal {self.run_id} "
                                     f"{f.service}`)"
                for f in faults(self.backend, self.run_id) if f.kind in verb
                for u in f.undo if status.get(str(u.get("container", ""))) in verb[f.kind][1]}

    def seed(self, *services: str, on_event: EventSink = ignore) -> None:
        """Run the seed steps of these services (default: every service that has them) again."""
        from envkit.api import seed  # the API's function; imported on use (api imports this module)

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
        self._info = result.info  # faults of restarted replicas were put back by envkit.live itself
        return result

    def _follow_faults(self, info: RunInfo | None = None) -> None:
        """Faults whose replica restarted (a new network namespace) are put back (envkit.faults.follow);
        ``info``: the run as just seen (None: looked at afresh)."""
        from envkit.faults.follow import reconcile
        if reconcile(self.backend, self.run_id, info):
            self._info = None

    @_scrubbing
    def collect(self, directory: str | Path, *, reason: str = "") -> Path:
        """Write a forensics bundle of the run (logs, inspect data, probe history, plan timing, events,
        SUMMARY.txt) into ``directory``; ``reason`` heads the summary. Returns the folder."""
        timeline = "\n".join(map(str, self.faults()))
        return forensics.write_live(self.backend, self.run_id, Path(directory), blueprint=self.blueprint,
                                    recorder=self.recorder, reason=reason, faults=timeline, hidden=self.hidden())

    def detach(self) -> None:
        """Hand the run over: it is no longer removed on ``with`` exit or at interpreter exit. Its labels
        still say lifetime "owner" unless up() was given ``lifetime="detached"``: then ``envkit gc``
        removes it once this process is gone."""
        self.owned = False
        _owned.discard(self)
        reaper.release(self.run_id)  # reaper: handed over

    def reset(self, *services: str, on_event: EventSink = ignore, path: str | None = None) -> dict[str, float]:
        """Put services (default: every one with a snapshot) back to their seeded state while the rest
        of the run goes on, then run again the seed steps of their dependants that may write into them
        (docs/snapshots.md#seeds-of-dependants); returns the seconds each reset took (the steps report
        their own). ``path="restore"`` forces the generic path where the fast one would apply."""
        taken = reset_run(self.backend, self.run_id, services, blueprint=self.blueprint, on_event=on_event,
                          path=path)
        self._info = None
        return taken

    # -- faults (envkit/faults, docs/faults.md) --------------------------------------------------------
    def fault(self, service: str, kind: str | None = None, *, duration: float | None = None,
              seed: int | None = None, **params: Any) -> ActiveFault:
        """Apply a fault to ``service`` (``env.fault("db", "latency", latency="200ms")``), or a scenario of
        the blueprint's ``faults:`` by name (``env.fault("db-slow")``). As a context manager it heals on
        exit, also when the block fails; ``duration`` (seconds) heals it by a timer. Connections already open
        to a faulted port are not faulted (a RuntimeWarning says which)."""
        from envkit.faults import session
        active = session.fault(self, service, kind, params, duration=duration, seed=seed)
        if note := active.record.live_note():
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        return active

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

