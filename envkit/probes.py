"""Readiness probes: one small protocol, polled with one policy.

Each check returns READY, NOT_YET or FAILED (for good). ``wait_ready`` polls from 20 ms with
exponential backoff capped at 50 ms (250 ms for exec and log probes; tenacity) until the deadline; it stops at once when the
container exits or the caller aborts. On failure the error names the service being probed and
carries its last log lines.

Where this process can route to container addresses (a local engine), tcp and http probes go to the
container's own IP: a published port answers through docker-proxy even before anything listens.
"""

from __future__ import annotations

import enum
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_result, wait_exponential

from envkit.backends.base import Backend, ContainerState, PortKey
from envkit.blueprint.model import Probe
from envkit.errors import EngineError, EnvkitError, NotFound, ServiceFailed

__all__ = ["Aborted", "Outcome", "check", "log_tail", "wait_exited", "wait_ready"]

LOG_LINES = 30


class Outcome(enum.Enum):
    READY = "ready"
    NOT_YET = "not yet"
    FAILED = "failed"


def log_tail(backend: Backend, container_id: str, lines: int = LOG_LINES) -> list[str]:
    try:
        text = backend.logs(container_id, tail=lines)
    except EnvkitError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


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
    why = f"exited with code {state.exit_code}"
    if state.oom_killed:
        why += " (killed: out of memory; raise its 'memory' limit)"
    return why


def wait_ready(backend: Backend, container_id: str, service: str, probe: Probe | None, timeout: float,
               abort: threading.Event, on_detail: Callable[[str], None] | None = None) -> str:
    """Poll until ready; returns the last detail. Raises ServiceFailed naming ``service``. ``on_detail``
    hears each not-yet result that differs from the one before (what the probe last saw)."""
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
        last["detail"] = _exit_reason(state) if state.exit_code is not None else f"is {state.status}"
        return Outcome.FAILED

    def attempt() -> Outcome:
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
        except NotFound:
            last["detail"] = "is gone (removed)"
            return Outcome.FAILED
        return outcome

    def give_up(retry_state: RetryCallState) -> bool:
        return abort.is_set() or time.monotonic() >= deadline

    # Cheap checks (a connect, an inspect) poll every 50 ms at most; a probe that spawns a process in
    # the container (exec) or reads its whole log backs off to 250 ms, not to load a small machine.
    cap = 0.25 if probe is not None and probe.kind in ("exec", "log") else 0.05
    retrying = Retrying(retry=retry_if_result(lambda o: o is Outcome.NOT_YET), stop=give_up,
                        wait=wait_exponential(multiplier=0.02, min=0.02, max=cap), sleep=_sleeper(abort),
                        retry_error_callback=lambda rs: rs.outcome.result() if rs.outcome else Outcome.NOT_YET)
    outcome: Outcome = retrying(lambda: tell(attempt()))
    if outcome is Outcome.READY:
        return last["detail"]
    if abort.is_set() and outcome is Outcome.NOT_YET:
        raise Aborted()
    what = probe.describe() if probe else "healthcheck"
    if outcome is Outcome.FAILED:
        exited = "exited" in last["detail"] or last["detail"].startswith("is ")
        reason = f"{last['detail']} before it was ready" if exited else f"readiness probe ({what}) failed: {last['detail']}"
    else:
        reason = f"not ready after {timeout:g}s (probe: {what}; last result: {last['detail']})"
    raise ServiceFailed(service, reason, log_tail(backend, container_id), last["name"])


def wait_exited(backend: Backend, container_id: str, service: str, timeout: float, abort: threading.Event) -> None:
    """For a job: wait until it exits; success is exit code 0."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if abort.is_set():
            raise Aborted()
        if remaining <= 0:
            name = backend.inspect_container(container_id).name
            raise ServiceFailed(service, f"job still running after {timeout:g}s", log_tail(backend, container_id), name)
        code = backend.wait_container(container_id, min(remaining, 0.5))
        if code is None:
            continue
        if code == 0:
            return
        state = backend.inspect_container(container_id)
        raise ServiceFailed(service, f"job {_exit_reason(state)}", log_tail(backend, container_id), state.name)


class Aborted(Exception):
    """Another step failed or the caller interrupted: stop waiting, quietly."""


def _sleeper(abort: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        abort.wait(seconds)

    return sleep
