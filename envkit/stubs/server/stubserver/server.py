"""The stub's HTTP server: answers the configured routes, records a journal, obeys /__envkit/ control calls.

Control API (JSON), on the stub's own port:

    GET    /__envkit/health                 200 {"status": "ok"}
    GET    /__envkit/journal[?method=&path=] every request received (not control calls), oldest first
    DELETE /__envkit/journal                 forget them
    POST   /__envkit/respond                 {route..., "times": n | null}: answers first, n times or until reset
    POST   /__envkit/reset                   drops run-time responses, the journal and every call count;
                                             every scenario back to its initial state
    GET    /__envkit/state                   {"states": {scenario: state}}
    PUT    /__envkit/state                   {"scenario": name (default "default"), "state": str}
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .routes import (
    DEFAULT_SCENARIO,
    FAULTS,
    INITIAL_STATE,
    Request,
    allowed,
    closest,
    initial_states,
    match,
    pick,
    render,
    render_text,
    scenario_of,
)

__all__ = ["State", "TLSServer", "serve", "tls_context"]

CONTROL = "/__envkit/"
TLS_DIR = "/run/envkit-tls"  # cert.pem, key.pem, ca.pem: copied in by envkit (envkit.stubs.tls) before the start
HANDSHAKE_TIMEOUT = 10.0
MAX_BODY = 8 << 20
MAX_JOURNAL = 10_000


class State:
    """Routes, run-time responses, call counts, scenario states and the journal, behind one lock."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.overrides: list[dict[str, Any]] = []
        self.calls: dict[int, int] = {}
        self.journal: list[dict[str, Any]] = []
        self.seq = 0
        self.states = initial_states(self.config)

    def _moved(self, route: dict[str, Any], req: Request) -> None:
        """The route answers: its scenario moves to ``set_state``; the request sees every state after that."""
        if route.get("set_state") is not None:
            self.states[scenario_of(route)] = str(route["set_state"])
        req.states = dict(self.states)

    def answer(self, req: Request) -> tuple[dict[str, Any], str | None]:
        """(response, the route's name or None when nothing matched); also counts the call."""
        with self.lock:
            for o in list(self.overrides):
                params = match(o, req) if allowed(o, self.states) else None
                if params is not None:
                    req.params = params
                    self._moved(o, req)
                    o["used"] = o.get("used", 0) + 1
                    req.seq = o["used"]
                    if o.get("times") is not None and o["used"] >= o["times"]:
                        self.overrides.remove(o)
                    return pick(o, o["used"]), "respond"
            for i, route in enumerate(self.config.get("routes", [])):
                params = match(route, req) if allowed(route, self.states) else None
                if params is not None:
                    req.params = params
                    self._moved(route, req)
                    self.calls[i] = self.calls.get(i, 0) + 1
                    req.seq = self.calls[i]
                    return pick(route, self.calls[i]), route.get("name") or f"{route.get('method', 'ANY')} {route['path']}"
            req.states = dict(self.states)
        default = self.config.get("default")
        if default:
            return dict(default), None
        near = closest(self.config.get("routes", []), req)
        return {"status": 404, "json": {"error": f"no stub route for {req.method} {req.path}", "closest": near}}, None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.journal.append(entry)
            del self.journal[:-MAX_JOURNAL]


class Handler(BaseHTTPRequestHandler):
    server_version = "envkit-stub/1"
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send({"status": 400, "json": {"error": "bad Content-Length"}})
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        raw = self._body()
        if raw is None:
            return
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL):
            self._control(url.path[len(CONTROL):].strip("/"), parse_qs(url.query), raw)
            return
        req = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, raw, id=uuid.uuid4().hex[:16])
        response, route = self.state.answer(req)
        self.state.record({"time": req.now.timestamp(), "method": req.method, "path": url.path,
                           "query": url.query, "headers": dict(self.headers.items()),
                           "body": raw.decode("utf-8", "replace"), "route": route,
                           "status": int(response.get("status", 200)), "id": req.id,
                           "fault": response.get("fault") or None})
        delay = response.get("delay")
        if delay:
            time.sleep(random.uniform(float(delay[0]), float(delay[1])))
        self._send(response, req)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _send(self, response: dict[str, Any], req: Request | None = None) -> None:
        fault = response.get("fault")
        if fault in ("reset", "empty", "random_then_close"):
            self._break(fault)
            return
        headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        if req is not None:
            headers = {k: render_text(v, req) for k, v in headers.items()}
        if "json" in response:
            value = render(response["json"], req) if req is not None else response["json"]
            body = json.dumps(value).encode()
            headers.setdefault("Content-Type", "application/json")
        elif "text" in response:
            body = (render_text(response["text"], req) if req is not None else response["text"]).encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif "b64" in response:
            body = base64.b64decode(response["b64"])
        else:
            body = b""
        if fault == "malformed_json":
            body = (body[: max(1, len(body) // 2)] if body else b'{"') + b"\x00}{"
            headers["Content-Type"] = "application/json"
        self.send_response(int(response.get("status", 200)))
        for k, v in headers.items():
            self.send_header(k, v)
        if fault == "malformed_chunk":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhel")  # a chunk shorter than it says, then a size that is no number
            self.wfile.write(b"\r\nzz-not-hex\r\n")
            self.wfile.flush()
            self._break("empty")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _break(self, how: str) -> None:
        """Ends the connection without a proper answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            if how == "random_then_close":
                self.wfile.write(os.urandom(random.randint(64, 1024)))
                self.wfile.flush()
            if how == "reset":  # RST instead of FIN: the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # Close the descriptor itself now: socket.close() would wait for the handler's file objects, and
            # the server's own shutdown(SHUT_WR) would send a FIN first.
            os.close(self.connection.detach())
        except OSError:
            pass

    def _control(self, what: str, query: dict[str, list[str]], raw: bytes) -> None:
        st = self.state
        if what == "health":
            self._send({"status": 200, "json": {"status": "ok"}})
        elif what == "journal" and self.command == "GET":
            with st.lock:
                entries = list(st.journal)
            for key in ("method", "path", "route"):
                if key in query:
                    want = query[key][0]
                    entries = [e for e in entries if str(e.get(key) or "").lower() == want.lower()] \
                        if key == "method" else [e for e in entries if e.get(key) == want]
            self._send({"status": 200, "json": entries})
        elif what == "journal" and self.command == "DELETE":
            with st.lock:
                st.journal.clear()
            self._send({"status": 204})
        elif what == "respond" and self.command == "POST":
            try:
                spec = json.loads(raw or b"{}")
                problem = _check_route(spec)
            except ValueError as exc:
                spec, problem = {}, f"body is not JSON: {exc}"
            if problem:
                self._send({"status": 400, "json": {"error": problem}})
                return
            with st.lock:
                st.overrides.insert(0, spec)
                if "state" in spec or "set_state" in spec:  # a scenario of its own starts in "started"
                    st.states.setdefault(scenario_of(spec), INITIAL_STATE)
            self._send({"status": 201, "json": {"added": spec}})
        elif what == "state" and self.command == "GET":
            with st.lock:
                states = dict(st.states)
            self._send({"status": 200, "json": {"states": states}})
        elif what == "state" and self.command in ("PUT", "POST"):
            try:
                spec = json.loads(raw or b"{}")
            except ValueError as exc:
                spec = {"error": f"body is not JSON: {exc}"}
            scenario = (spec.get("scenario") or DEFAULT_SCENARIO) if isinstance(spec, dict) else None
            state = spec.get("state") if isinstance(spec, dict) else None
            with st.lock:
                known = set(st.states)
                if not isinstance(state, str) or not state or not isinstance(scenario, str):
                    problem = spec.get("error") if isinstance(spec, dict) and "error" in spec else \
                        'expected {"scenario": name, "state": "..."}'
                elif scenario not in known:
                    problem = f"no scenario {scenario!r}; known: {', '.join(sorted(known)) or 'none'}"
                else:
                    problem = None
                    st.states[scenario] = state
            if problem:
                self._send({"status": 400, "json": {"error": problem}})
            else:
                self._send({"status": 200, "json": {"states": dict(st.states)}})
        elif what == "reset" and self.command == "POST":
            with st.lock:
                st.reset()
            self._send({"status": 204})
        else:
            self._send({"status": 404, "json": {"error": f"no control call {self.command} {CONTROL}{what}"}})


def _check_route(spec: Any) -> str | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not spec["path"].startswith("/"):
        return "expected {method, path: '/...', responses: [...]}"
    responses = spec.get("responses")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, dict) for r in responses):
        return "responses must be a non-empty list of mappings"
    for r in responses:
        if r.get("fault") not in (None, *FAULTS):
            return f"unknown fault {r.get('fault')!r}; known: {', '.join(FAULTS)}"
    for key in ("scenario", "state", "set_state"):
        if spec.get(key) is not None and (not isinstance(spec[key], str) or not spec[key]):
            return f"{key} must be a non-empty string"
    times = spec.get("times")
    if times is not None and (not isinstance(times, int) or times < 1):
        return "times must be a positive integer or null"
    return None


class TLSServer(ThreadingHTTPServer):
    """HTTPS: the handshake happens in the connection's own thread, so a slow client holds up no one else."""

    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:  # a client that does not trust the CA, or speaks plain HTTP
            print(f"{client_address[0]} TLS handshake failed: {exc}", flush=True)
            return
        wrapped.settimeout(None)
        try:
            super().finish_request(wrapped, client_address)
        finally:
            with contextlib.suppress(OSError):
                wrapped.close()


def tls_context(directory: str = TLS_DIR) -> ssl.SSLContext:
    """The server's TLS context, from the files envkit copies in before the stub starts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
    return context


def serve(config: dict[str, Any]) -> None:
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    handler = type("StubHandler", (Handler,), {"state": State(config)})
    port = int(config.get("port", 8080))
    if config.get("tls"):
        context = tls_context()  # before it listens: a TLS stub is ready once its port accepts
        server: ThreadingHTTPServer = type("StubTLSServer", (TLSServer,), {"context": context})(("0.0.0.0", port),
                                                                                                handler)
    else:
        server = ThreadingHTTPServer(("0.0.0.0", port), handler)
    scheme = "https" if config.get("tls") else "http"
    # As PID 1 the process has no default action for SIGTERM: without a handler `docker stop` (a stop fault,
    # env.stop, teardown) waits out the whole grace period and kills it (exit 137, seen as a failure).
    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown() waits for serve_forever

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    print(f"envkit-stub: {len(config.get('routes', []))} route(s) on {scheme}://0.0.0.0:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("envkit-stub: stopped", flush=True)
