"""Readiness probes: one small protocol, polled with one policy.

Each check returns READY, NOT_YET or FAILED (for good). ``wait_ready`` polls until the deadline and
stops at once when the container exits or the caller aborts. The policy (``interval``): fast while a
service is young — from 20 ms, doubling to 50 ms (250 ms for exec and log probes, which spawn a
process or read the whole log) for the first ``FAST_FOR`` seconds — then backing off by half again
per attempt to one check a second, so that a slow service's own log is not flooded by the probe's
requests. On failure the error names the service being probed and carries the first and the last
lines of its log (what it said at start-up, and where it got to).

Where this process can route to container addresses (a local engine), tcp and http probes go to the
container's own IP: a published port answers through docker-proxy even before anything listens.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tenacity import RetryCallState, Retrying, retry_if_result

from envkit.backends.base import Backend, ContainerState, PortKey
from envkit.blueprint.model import Probe
from envkit.errors import EngineError, EnvkitError, NotFound, ServiceFailed
from envkit.text import duration

__all__ = ["Aborted", "Attempts", "Outcome", "ProbeLog", "check", "failure", "interval", "log_excerpt", "log_tail",
           "probe_from_label", "wait_exited", "wait_ready"]

LOG_LINES = 30  # the last lines of a failed service's log shown in its error
HEAD_LINES = 10  # and its first lines, when there are more than both together

FIRST = 0.02  # seconds: the first wait between two checks
FAST_CAP = 0.05  # the longest wait while the service is young (cheap checks: a connect, an inspect)
FAST_CAP_COSTLY = 0.25  # the same for exec and log probes
FAST_FOR = 2.0  # seconds of fast polling since the wait began
GROWTH = 1.5  # then each wait is this much longer than the one before ...
SLOW_CAP = 1.0  # ... up to one check a second


class Outcome(enum.Enum):
    READY = "ready"
    NOT_YET = "not yet"
    FAILED = "failed"


@dataclass
class Attempts:
    """A stretch of identical results of one container's readiness checks: what was tried, when (wall
    clock, first and last), how often, and what came back."""

    service: str
    container: str
    tried: str  # the probe ("tcp 5432", "http GET /health on 8080", "healthcheck", "exit of the job")
    outcome: Outcome
    detail: str
    first: float
    last: float
    count: int = 1
    slowest: float = 0.0  # seconds the slowest of these checks took


@dataclass
class ProbeLog:
    """The recorder the probes report to (thread-safe). A run of identical results is one entry with a
    count, so a minute of polling costs a few entries; ``LIMIT`` entries at most."""

    LIMIT = 2000
    entries: list[Attempts] = field(default_factory=list)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, service: str, container: str, tried: str, outcome: Outcome, detail: str,
               at: float, seconds: float) -> None:
        with self._lock:
            for e in reversed(self.entries):
                if e.container == container:
                    if (e.outcome, e.detail, e.tried) == (outcome, detail, tried):
                        e.last, e.count, e.slowest = at, e.count + 1, max(e.slowest, seconds)
                        return
                    break
            if len(self.entries) >= self.LIMIT:
                self.dropped += 1
                return
            self.entries.append(Attempts(service, container, tried, outcome, detail, at, at, 1, seconds))

    def of(self, service: str) -> list[Attempts]:
        with self._lock:
            return [e for e in self.entries if e.service == service]


def _describe(probe: Probe | None) -> str:
    return probe.describe() if probe else "started (or healthy, with a HEALTHCHECK)"


def interval(elapsed: float, previous: float, costly: bool = False) -> float:
    """The wait before the next check, ``elapsed`` seconds into waiting, after a wait of ``previous``."""
    cap = FAST_CAP_COSTLY if costly else FAST_CAP
    if elapsed < FAST_FOR:
        return min(max(previous * 2, FIRST), cap)
    return min(max(previous, cap) * GROWTH, SLOW_CAP)


def log_excerpt(backend: Backend, container_id: str, since: float | None = None,
                head: int = HEAD_LINES, tail: int = LOG_LINES) -> tuple[list[str], list[str]]:
    """The first ``head`` and the last ``tail`` lines of a container's log (since ``since``, a UNIX
    time), or ``([], every line)`` when there are no more than both together."""
    try:
        lines = [line.text for line in backend.log_lines(container_id, since=since) if line.text.strip()]
    except EnvkitError:
        return [], []
    if len(lines) <= head + tail:
        return [], lines
    return lines[:head], lines[-tail:]


def failure(backend: Backend, service: str, reason: str, container_id: str, name: str) -> ServiceFailed:
    """``ServiceFailed`` for ``service``, with the first and last lines its container printed since it
    (last) started: a restarted service's earlier runs are left out."""
    since = None
    with contextlib.suppress(EnvkitError, ValueError):
        started = backend.inspect_container(container_id).started_at
        if started and not started.startswith("0001-"):
            # A second early: the engine records the start time just after the process has begun.
            since = datetime.fromisoformat(started).timestamp() - 1.0
    head, tail = log_excerpt(backend, container_id, since)
    return ServiceFailed(service, reason, tail, name, log_head=head)


def log_tail(backend: Backend, container_id: str, lines: int = LOG_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a container's log."""
    try:
        text = backend.logs(container_id, tail=lines)
    except EnvkitError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def probe_from_label(text: str, secret: Mapping[str, str] | None = None) -> Probe | None:
    """The probe a container's ``io.envkit.probe`` label holds (``envkit.plan.probe_label``), if any, with
    the values of ``secret`` (name → value) put back where the label holds placeholders."""
    if not text:
        return None
    try:
        if secret:
            from envkit import secrets

            text = secrets.restore(text, {k: json.dumps(v)[1:-1] for k, v in secret.items()})
        fields = json.loads(text)
        if "command" in fields:
            fields["command"] = tuple(fields["command"])
        return Probe(**fields)
    except (ValueError, TypeError, KeyError):  # KeyError: a secret it needs is nowhere to be read
        return None


def _address(backend: Backend, state: ContainerState, port: int) -> tuple[str, int] | None:
    if backend.direct_routes:
        for ip in state.addresses.values():
            if ip:
                return ip, port
    published = state.ports.get(PortKey(port))
    if published:
        return backend.host, published.port
    return None


EXEC_TIMEOUT = 10.0  # one exec probe attempt; a command that hangs must not hang `up`


def check(backend: Backend, state: ContainerState, probe: Probe | None,
          budget: float = EXEC_TIMEOUT) -> tuple[Outcome, str]:
    if not state.detailed:  # a listing does not say whether there is a health status: ask
        state = backend.inspect_container(state.id)
    if probe is not None and probe.kind == "none":  # the engine runs no HEALTHCHECK: running is ready
        return Outcome.READY, "started"
    if probe is None or probe.kind == "healthcheck":
        if state.health is None and probe is None:
            return Outcome.READY, "started"
        if state.health is None:
            return Outcome.FAILED, "the image declares no HEALTHCHECK"
        return (Outcome.READY if state.health == "healthy" else Outcome.NOT_YET), f"health: {state.health}"
    if probe.kind in ("tcp", "http"):
        assert probe.port is not None
        where = _address(backend, state, probe.port)
        if where is None:
            return Outcome.FAILED, f"port {probe.port} is not published and the engine's network is not routable"
        return _tcp(where) if probe.kind == "tcp" else _http(where, probe)
    if probe.kind == "exec":
        result = backend.exec(state.id, probe.command, timeout=max(0.5, min(budget, EXEC_TIMEOUT)))
        if result.exit_code == 0:
            return Outcome.READY, "exit 0"
        detail = f"exit {result.exit_code}: {result.output.strip()[-200:]}"
        if result.exit_code in (126, 127) or "executable file not found" in result.output:
            return Outcome.FAILED, f"probe command cannot run ({detail})"
        return Outcome.NOT_YET, detail
    if probe.kind == "log":
        assert probe.pattern is not None
        found = re.search(probe.pattern, backend.logs(state.id), re.M)
        return (Outcome.READY, "log line seen") if found else (Outcome.NOT_YET, f"no line matches /{probe.pattern}/")
    return Outcome.FAILED, f"unknown probe {probe.kind}"


def _tcp(where: tuple[str, int]) -> tuple[Outcome, str]:
    try:
        with socket.create_connection(where, timeout=1.0) as sock:
            # A proxy in front of a closed port accepts and then hangs up at once.
            sock.settimeout(0.03)
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return Outcome.NOT_YET, "connection closed at once"
            except (TimeoutError, BlockingIOError):
                pass
            return Outcome.READY, "accepting connections"
    except OSError as exc:
        return Outcome.NOT_YET, f"tcp {where[1]}: {exc.strerror or exc}"


def _http(where: tuple[str, int], probe: Probe) -> tuple[Outcome, str]:
    conn = http.client.HTTPConnection(where[0], where[1], timeout=2.0)
    try:
        conn.request("GET", probe.path, headers={"User-Agent": "envkit-probe"})
        response = conn.getresponse()
        body = response.read(65536).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome.NOT_YET, f"GET {probe.path}: {getattr(exc, 'strerror', None) or exc}"
    finally:
        conn.close()
    ok = response.status == probe.status if probe.status else 200 <= response.status < 400
    if not ok:
        return Outcome.NOT_YET, f"GET {probe.path}: status {response.status}"
    if probe.body and not re.search(probe.body, body):
        return Outcome.NOT_YET, f"GET {probe.path}: body does not match /{probe.body}/"
    return Outcome.READY, f"GET {probe.path}: {response.status}"


def _exit_reason(state: ContainerState) -> str:
    if state.lost:  # its node went down: there is no exit code to tell
        return state.lost
    why = f"exited with code {state.exit_code}"
    if state.oom_killed:
        why += " (killed: out of memory; raise its 'memory' limit)"
    return why


def wait_ready(backend: Backend, container_id: str, service: str, probe: Probe | None, timeout: float,
               abort: threading.Event, on_detail: Callable[[str], None] | None = None,
               log: ProbeLog | None = None) -> str:
    """Poll until ready; returns the last detail. Raises ServiceFailed naming ``service``. ``on_detail``
    hears each not-yet result that differs from the one before (what the probe last saw); each check's
    result goes to ``log`` (forensics)."""
    deadline = time.monotonic() + timeout
    last = {"detail": "not checked yet", "name": container_id[:12]}
    told = {"detail": ""}

    def tell(outcome: Outcome) -> Outcome:
        if on_detail is not None and outcome is Outcome.NOT_YET and last["detail"] != told["detail"]:
            told["detail"] = last["detail"]
            on_detail(last["detail"])
        return outcome

    def stopped(state: ContainerState) -> Outcome | None:
        last["name"] = state.name
        if state.running:
            return None
        last["detail"] = _exit_reason(state) if state.exit_code is not None or state.lost else f"is {state.status}"
        return Outcome.FAILED

    def attempt() -> Outcome:
        began, at = time.monotonic(), time.time()
        outcome = checked()
        if log is not None:
            log.record(service, last["name"], _describe(probe), outcome, last["detail"], at, time.monotonic() - began)
        return outcome

    def checked() -> Outcome:
        try:
            state = backend.inspect_container(container_id)
            if (down := stopped(state)) is not None:
                return down
            try:
                outcome, last["detail"] = check(backend, state, probe, deadline - time.monotonic())
            except NotFound:
                raise
            except EngineError as exc:
                # Most often (a Conflict) the container stopped between the inspect and the check: say why.
                if (down := stopped(backend.inspect_container(container_id))) is not None:
                    return down
                last["detail"] = str(exc).splitlines()[0]
                return Outcome.NOT_YET
            # A probe that failed for good because the process exited meanwhile (Docker answers an exec
            # into a container that is stopping with exit 126, no error): the exit is the reason.
            if outcome is Outcome.FAILED and (down := stopped(backend.inspect_container(container_id))) is not None:
                return down
        except NotFound:
            last["detail"] = "is gone (removed)"
            return Outcome.FAILED
        return outcome

    def give_up(retry_state: RetryCallState) -> bool:
        return abort.is_set() or time.monotonic() >= deadline

    costly = probe is not None and probe.kind in ("exec", "log")
    began, previous = time.monotonic(), 0.0

    def pause(retry_state: RetryCallState) -> float:
        nonlocal previous
        previous = interval(time.monotonic() - began, previous, costly)
        return max(0.0, min(previous, deadline - time.monotonic()))

    retrying = Retrying(retry=retry_if_result(lambda o: o is Outcome.NOT_YET), stop=give_up,
                        wait=pause, sleep=_sleeper(abort),
                        retry_error_callback=lambda rs: rs.outcome.result() if rs.outcome else Outcome.NOT_YET)
    outcome: Outcome = retrying(lambda: tell(attempt()))
    if outcome is Outcome.READY:
        return last["detail"]
    if abort.is_set() and outcome is Outcome.NOT_YET:
        raise Aborted()
    what = probe.describe() if probe else "healthcheck"
    if outcome is Outcome.FAILED:
        exited = "exited" in last["detail"] or last["detail"].startswith(("is ", "was lost"))
        reason = f"{last['detail']} before it was ready" if exited else f"readiness probe ({what}) failed: {last['detail']}"
    else:
        reason = f"not ready after {duration(timeout)} (probe: {what}; last result: {last['detail']})"
    raise failure(backend, service, reason, container_id, last["name"])


def wait_exited(backend: Backend, container_id: str, service: str, timeout: float, abort: threading.Event,
                log: ProbeLog | None = None) -> None:
    """For a job: wait until it exits; success is exit code 0. The outcome goes to ``log``."""
    began, at = time.monotonic(), time.time()
    deadline = began + timeout

    def note(outcome: Outcome, detail: str, name: str) -> None:
        if log is not None:
            log.record(service, name, "exit of the job with code 0", outcome, detail, at, time.monotonic() - began)

    while True:
        remaining = deadline - time.monotonic()
        if abort.is_set():
            raise Aborted()
        if remaining <= 0:
            name = backend.inspect_container(container_id).name
            note(Outcome.FAILED, f"still running after {duration(timeout)}", name)
            raise failure(backend, service, f"job still running after {duration(timeout)}", container_id, name)
        code = backend.wait_container(container_id, min(remaining, 0.5))
        if code is None:
            continue
        state = backend.inspect_container(container_id)
        if code == 0:
            note(Outcome.READY, "exited with code 0", state.name)
            return
        note(Outcome.FAILED, _exit_reason(state), state.name)
        raise failure(backend, service, f"job {_exit_reason(state)}", container_id, state.name)


class Aborted(Exception):
    """Another step failed or the caller interrupted: stop waiting, quietly."""


def _sleeper(abort: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        abort.wait(seconds)

    return sleep
