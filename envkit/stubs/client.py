"""Control of a running stub (docs/stubs.md): its journal, run-time responses, reset. Standard library only.

    pay = env.stub("payments")                       # or StubClient.at("127.0.0.1", port)
    pay.respond("POST", "/charges", status=502, times=1)
    ...
    assert pay.called("POST", "/charges") == 1
    charge = pay.journal("POST", "/charges")[-1].json()
    pay.reset()

The calls go to ``/__envkit/`` on the stub's own port: through its published port when it has one,
else through a command run in its container (``Transport``). Every failure is a ``StubError``.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from envkit import labels as L
from envkit.backends.base import PortKey
from envkit.errors import EnvkitError
from envkit.outputs import host_port
from envkit.stubs.model import CONFIG_VAR, DEFAULT_PORT
from envkit.stubs.server.stubserver.routes import DEFAULT_SCENARIO, FAULTS, Request, match
from envkit.stubs.server.stubserver.server import TLS_DIR

if TYPE_CHECKING:
    from envkit.api import Environment

__all__ = ["JournalEntry", "StubClient", "StubError", "Transport", "connect", "exec_transport", "http_transport",
           "tls_context"]

#: (method, control path, JSON body or None) -> (HTTP status, answer body)
Transport = Callable[[str, str, bytes | None], tuple[int, bytes]]


class StubError(EnvkitError):
    """A stub's control API refused a call, did not answer, or an expectation on its journal failed."""

    exit_code = 5


@dataclass(frozen=True)
class JournalEntry:
    """One request the stub received."""

    seq: int
    time: float  # seconds since the epoch, when it arrived
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: str
    route: str | None  # the route that answered (its name, "METHOD /path", or "respond"); None: unmatched
    status: int  # what the stub answered (before any fault)
    id: str = ""  # the request id ({{request.id}} in templates)
    fault: str | None = None  # the fault it answered with (reset, empty, ...): the client never saw `status`
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JournalEntry:
        return cls(int(d["seq"]), float(d["time"]), str(d["method"]), str(d["path"]), str(d.get("query") or ""),
                   dict(d.get("headers") or {}), str(d.get("body") or ""), d.get("route"), int(d["status"]),
                   str(d.get("id") or ""), d.get("fault") or None)

    def json(self) -> Any:
        """The body as JSON (StubError when it is not)."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise StubError(f"request {self.seq} ({self.method} {self.path}) has no JSON body: {exc}") from exc

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def tls_context(ca_pem: str | None) -> ssl.SSLContext:
    """A client context that trusts ``ca_pem`` (a TLS stub's run CA), else the system's CAs."""
    return ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()


def http_transport(host: str, port: int, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> Transport:
    """Calls over HTTP, or HTTPS verified by ``context``."""

    def call(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context) if context else \
            http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            answer = conn.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException) as exc:
            raise StubError(f"stub at {host}:{port} does not answer {method} {path}: {exc}") from exc
        finally:
            conn.close()
    return call


class StubClient:
    def __init__(self, transport: Transport, name: str = "stub", ca_pem: str | None = None) -> None:
        self._call = transport
        self.name = name
        #: a TLS stub's run CA certificate (PEM), for the clients a test hands it to; None: plain HTTP or unknown
        self.ca_pem = ca_pem

    @classmethod
    def at(cls, host: str, port: int, name: str = "stub", *, tls: bool = False,
           ca_pem: str | None = None) -> StubClient:
        """``tls``: over HTTPS, trusting ``ca_pem`` (``${services.NAME.ca_pem}``), else the system's CAs."""
        return cls(http_transport(host, port, context=tls_context(ca_pem) if tls or ca_pem else None), name, ca_pem)

    @classmethod
    def from_url(cls, url: str, name: str = "stub", *, ca_pem: str | None = None) -> StubClient:
        """From the stub's published URL (an output such as ``http://127.0.0.1:49153``); an ``https://``
        one is verified with ``ca_pem`` (the run's CA, ``${services.NAME.ca_pem}``)."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise StubError(f"stub URL {url!r} has no host and port")
        return cls.at(parts.hostname, parts.port, name, tls=parts.scheme == "https", ca_pem=ca_pem)

    def _json(self, method: str, path: str, payload: object = None, ok: tuple[int, ...] = (200,)) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, raw = self._call(method, "/__envkit/" + path, body)
        if status not in ok:
            try:
                why = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                why = raw.decode("utf-8", "replace")[:200]
            hint = " (is it a kind: stub service?)" if status == 404 and path == "health" else ""
            raise StubError(f"stub {self.name}: {method} /__envkit/{path} answered {status}: {why}{hint}")
        return json.loads(raw) if raw else None

    def health(self) -> bool:
        return bool(self._json("GET", "health"))

    # -- the journal ----------------------------------------------------------------------------------
    def journal(self, method: str | None = None, path: str | None = None, *, route: str | None = None,
                since: float | None = None) -> list[JournalEntry]:
        """What the stub received, oldest first. ``path`` is a pattern like a route's (``/charges/{id}``,
        ``*``, a final ``**``); ``route`` the name of the route that answered; ``since`` a time."""
        entries = [JournalEntry.from_json(e) for e in self._json("GET", "journal")]
        out = []
        for e in entries:
            if method is not None and e.method.upper() != method.upper():
                continue
            if path is not None and match({"path": path}, Request(e.method, e.path)) is None:
                continue
            if route is not None and e.route != route:
                continue
            if since is not None and e.time < since:
                continue
            out.append(e)
        return out

    def called(self, method: str | None = None, path: str | None = None, **filters: Any) -> int:
        """How many requests matched (the journal's filters)."""
        return len(self.journal(method, path, **filters))

    def assert_called(self, method: str | None = None, path: str | None = None, *, times: int | None = None,
                      at_least: int = 1, **filters: Any) -> list[JournalEntry]:
        """The matching requests; StubError naming what was received instead when the count is off."""
        found = self.journal(method, path, **filters)
        ok = len(found) == times if times is not None else len(found) >= at_least
        if not ok:
            want = f"exactly {times}" if times is not None else f"at least {at_least}"
            seen = ", ".join(f"{e.method} {e.path}" for e in self.journal()[-10:]) or "nothing"
            raise StubError(f"stub {self.name}: expected {want} {method or 'ANY'} {path or '*'}, got {len(found)}; "
                            f"last received: {seen}")
        return found

    def assert_not_called(self, method: str | None = None, path: str | None = None, **filters: Any) -> None:
        self.assert_called(method, path, times=0, **filters)

    def wait_called(self, method: str | None = None, path: str | None = None, *, times: int = 1,
                    timeout: float = 10.0, **filters: Any) -> list[JournalEntry]:
        """Waits until at least ``times`` matching requests arrived (for calls made in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.journal(method, path, **filters)
            if len(found) >= times or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if len(found) < times:
            raise StubError(f"stub {self.name}: {len(found)} of {times} {method or 'ANY'} {path or '*'} "
                            f"within {timeout:g}s")
        return found

    def clear_journal(self) -> None:
        self._json("DELETE", "journal", ok=(204,))

    # -- run-time behaviour ---------------------------------------------------------------------------
    def respond(self, method: str, path: str, status: int = 200, *, json: Any = None, body: str | None = None,
                headers: Mapping[str, str] | None = None, delay: float | tuple[float, float] | None = None,
                fault: str | None = None, times: int | None = None, query: Mapping[str, str] | None = None,
                match_headers: Mapping[str, str] | None = None, match_body: Mapping[str, Any] | None = None,
                responses: list[Mapping[str, Any]] | None = None, scenario: str | None = None,
                state: str | None = None, set_state: str | None = None) -> None:
        """Answers ``method path`` this way before any route: ``times`` calls (``1``: one-shot), or
        until ``reset()`` (``None``). Bodies are templates, as in the blueprint. ``responses``: an
        ordered list of raw responses (``{"status", "json" | "text", "headers", "delay": [lo, hi], "fault"}``)
        instead of the single one. ``state``: only while ``scenario`` (default ``"default"``) is in it;
        ``set_state``: moves the scenario there once it answers."""
        if fault is not None and fault not in FAULTS:
            raise StubError(f"unknown fault {fault!r}; use one of {', '.join(FAULTS)}")
        if responses is None:
            one: dict[str, Any] = {"status": status}
            if json is not None:
                one["json"] = json
            elif body is not None:
                one["text"] = body
            if headers:
                one["headers"] = dict(headers)
            if delay is not None:
                one["delay"] = list(delay) if isinstance(delay, tuple) else [delay, delay]
            if fault is not None:
                one["fault"] = fault
            responses = [one]
        spec: dict[str, Any] = {"method": method.upper(), "path": path, "responses": list(responses),
                                "times": times}
        for key, value in (("query", query), ("headers", match_headers), ("body", match_body)):
            if value:
                spec[key] = dict(value)
        for key, name in (("scenario", scenario), ("state", state), ("set_state", set_state)):
            if name is not None:
                spec[key] = name
        self._json("POST", "respond", spec, ok=(201,))

    # -- state (scenarios) ------------------------------------------------------------------------------
    def states(self) -> dict[str, str]:
        """Every scenario's current state."""
        return dict(self._json("GET", "state")["states"])

    def state(self, scenario: str = DEFAULT_SCENARIO) -> str:
        """The current state of ``scenario``."""
        states = self.states()
        if scenario not in states:
            raise StubError(f"stub {self.name} has no scenario {scenario!r} "
                            f"(scenarios: {', '.join(sorted(states)) or 'none'})")
        return states[scenario]

    def set_state(self, state: str, scenario: str = DEFAULT_SCENARIO) -> None:
        """Moves ``scenario`` to ``state`` now (until a route moves it, or ``reset()``)."""
        self._json("PUT", "state", {"scenario": scenario, "state": state})

    def reset(self) -> None:
        """Drops run-time responses, the journal and every route's call count, and puts every scenario
        back in its initial state: as just started."""
        self._json("POST", "reset", ok=(204,))


_EXEC_SCRIPT = """
import base64, http.client, json, ssl, sys
scheme, _, port = sys.argv[1].rpartition(":")
c = http.client.HTTPSConnection("127.0.0.1", int(port), timeout=10, context=ssl.create_default_context(
    cafile=sys.argv[4])) if scheme == "https" else http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
body = base64.b64decode(sys.argv[5]) if len(sys.argv) > 5 else None
c.request(sys.argv[2], sys.argv[3], body=body, headers={"Content-Type": "application/json"} if body else {})
r = c.getresponse()
print("ENVKIT-STUB " + json.dumps({"status": r.status, "body": base64.b64encode(r.read()).decode()}))
"""


def exec_transport(run: Callable[[tuple[str, ...]], tuple[int, str]], port: int, name: str = "stub",
                   tls: bool = False) -> Transport:
    """Calls made by a command in the stub's own container (``run``: argv -> (exit code, output)), for a
    stub that publishes no port (``tls``: over HTTPS, verified with the CA copied in beside its certificate)."""

    def call(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        argv = ("python3", "-c", _EXEC_SCRIPT, f"{'https' if tls else 'http'}:{port}", method, path,
                f"{TLS_DIR}/ca.pem", *((base64.b64encode(body).decode(),) if body else ()))
        code, output = run(argv)
        line = next((ln for ln in reversed(output.splitlines()) if ln.startswith("ENVKIT-STUB ")), None)
        if code != 0 or line is None:
            raise StubError(f"stub {name} does not answer {method} {path} in its container: {output.strip()[-300:]}")
        answer = json.loads(line[len("ENVKIT-STUB "):])
        return int(answer["status"]), base64.b64decode(answer["body"])
    return call


def connect(env: Environment, service: str, replica: int = 1) -> StubClient:
    """The control client of a stub service of a run: its port from the container's configuration,
    through the published port when there is one, else by exec."""
    container = env._running(service, replica)
    state = env.backend.inspect_container(container.id)
    text = state.environment.get(CONFIG_VAR)
    if text is None:
        raise StubError(f"service {service} of run {env.run_id} is not a stub (kind: stub)")
    try:
        config = json.loads(text)
        port, tls = int(config.get("port", DEFAULT_PORT)), bool(config.get("tls"))
    except (ValueError, AttributeError) as exc:
        raise StubError(f"service {service}: unreadable {CONFIG_VAR}: {exc}") from exc
    ca = state.labels.get(L.TLS_CA) if tls else None
    bound = state.ports.get(PortKey(port, "tcp"))
    if bound is not None:
        host, published = host_port(env.info, service, port)
        context = tls_context(ca) if tls else None
        return StubClient(http_transport(host, published, context=context), service, ca)

    def run(argv: tuple[str, ...]) -> tuple[int, str]:
        result = env.exec(service, argv, replica)
        return result.exit_code, result.output
    return StubClient(exec_transport(run, port, service, tls), service, ca)
