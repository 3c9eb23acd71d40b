"""The run's control endpoint: ``envkit run`` hands its command ``ENVKIT_CONTROL_URL``, an HTTP address on
127.0.0.1 through which a test runner in any language resets services, heals faults and reads the run
document, served by the ``envkit run`` process itself.

Why: a suite that is not written in Python resets between tests with ``envkit reset RUN db``, and each of
those starts a Python process, imports envkit and connects to the engine (0.3-0.5 s) for a reset that
takes 10-100 ms. The process that brought the run up is alive for as long as the command runs, already
connected, and keeps the PostgreSQL session the template path uses (``envkit.pgsession``), so it answers
in the reset's own time::

    curl -fsS -X POST "$ENVKIT_CONTROL_URL/reset?service=db"      # {"reset": {"db": 0.031}}
    curl -fsS -X POST "$ENVKIT_CONTROL_URL/reset"                 # every service with a snapshot
    curl -fsS -X POST "$ENVKIT_CONTROL_URL/heal?service=payments" # undo faults (all, without ?service)
    curl -fsS "$ENVKIT_CONTROL_URL/run"                           # the run document (envkit.run/v1)

The address holds a random token as its first path segment: only a process that was given the variable
(the command and what it starts) can use it; any other path answers 404. It listens on 127.0.0.1 only, one
request at a time (resets of one run are not meant to overlap), and stops before the run is torn down (an
action under way finishes first; one sent later answers 409). Errors answer a JSON ``{"error": "..."}`` with
400 (unknown service, no snapshot to reset to, a malformed request), 409 (the run is busy, changed under it or
being removed) or 500, the same message ``envkit reset`` would print.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from envkit.errors import Conflict, EnvkitError, RunNotFound, UsageError

if TYPE_CHECKING:
    from envkit.faults.records import FaultRecord

__all__ = ["VARIABLE", "Controls", "serving"]

VARIABLE = "ENVKIT_CONTROL_URL"
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 120.0  # seconds


class Controls:
    """What the endpoint can do to one run: plain callables, so that the server does not depend on how
    the run is held (``Environment`` in ``envkit run``)."""

    def __init__(self, reset: Callable[[Sequence[str]], Mapping[str, float]],
                 heal: Callable[[str | None], Sequence[FaultRecord]], document: Callable[[], Mapping[str, object]]) -> None:
        self.reset, self.heal, self.document = reset, heal, document
        self.lock = threading.Lock()  # one action at a time
        self.closed = False  # the endpoint stopped: the run is being removed (read under the lock)


def _status(exc: EnvkitError) -> int:
    if isinstance(exc, UsageError | RunNotFound):
        return 400
    if isinstance(exc, Conflict):
        return 409
    return 500


def _handler(controls: Controls, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "envkit-control"
        timeout = IDLE_TIMEOUT  # a connection idle or half-sent this long is closed (its thread let go)
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
            pass  # the command's output is the user's: no access log on it

        def _answer(self, code: int, body: Mapping[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, dict[str, list[str]]] | None:
            parts = urlsplit(self.path)
            segments = parts.path.strip("/").split("/", 1)
            # bytes: compare_digest refuses a str that is not ASCII (the request line is read as Latin-1)
            if not secrets.compare_digest(segments[0].encode("utf-8", "replace"), token.encode()):
                self._answer(404, {"error": "not found"})  # a wrong token learns nothing
                return None
            return (segments[1] if len(segments) > 1 else ""), parse_qs(parts.query)

        def _services(self, query: dict[str, list[str]]) -> list[str]:
            names = [n for v in query.get("service", []) for n in v.split(",") if n]
            raw = (self.headers.get("Content-Length") or "0").strip()
            if not raw.isdigit() or not raw.isascii():  # -1 read to the end of the connection, unbounded
                raise UsageError(f"the request's Content-Length is not a size: {raw[:40]!r}")
            length = int(raw)
            if length > MAX_BODY:
                raise UsageError(f"the request's body is larger than {MAX_BODY} bytes")
            if length:
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError as exc:
                    raise UsageError(f"the request's body is not JSON: {exc}") from exc
                listed = body.get("services", []) if isinstance(body, dict) else None
                if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                    raise UsageError('the request\'s body must be {"services": ["name", ...]}')
                names += listed
            return names

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                return
            if route[0] in ("", "run"):
                with controls.lock:
                    self._act(lambda: dict(controls.document()))
            else:
                self._answer(404, {"error": f"no such action: GET /{route[0]} (GET /run; POST /reset, /heal)"})

        def do_POST(self) -> None:
            route = self._route()
            if route is None:
                return
            action, query = route
            if action not in ("reset", "heal"):
                self._answer(404, {"error": f"no such action: POST /{action} (POST /reset, /heal; GET /run)"})
                return
            try:
                names = self._services(query)
            except UsageError as exc:
                self._answer(400, {"error": str(exc)})
                return
            with controls.lock:
                if action == "reset":
                    self._act(lambda: {"reset": dict(controls.reset(names))})
                elif len(names) > 1:
                    self._answer(400, {"error": "heal takes one service (or none: every fault of the run)"})
                else:
                    self._act(lambda: {"healed": [{"id": r.id, "service": r.service, "fault": r.describe()}
                                                  for r in controls.heal(names[0] if names else None)]})

        def _act(self, action: Callable[[], Mapping[str, object]]) -> None:
            if controls.closed:  # waited for the lock while the endpoint stopped: the run is going away
                self._answer(409, {"error": "the run is being removed (its command has ended)"})
                return
            try:
                body = action()
            except EnvkitError as exc:
                self._answer(_status(exc), {"error": str(exc)})
                return
            except Exception as exc:  # a bug must not hang the runner's request: answer it, with its kind
                self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._answer(200, body)

    return Handler


@contextmanager
def serving(controls: Controls, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``controls`` on ``host`` (an ephemeral port) while the block runs; yields the base URL,
    token included (a secret: give it to the command, never print it)."""
    token = secrets.token_urlsafe(18)
    server = ThreadingHTTPServer((host, 0), _handler(controls, token))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="envkit-control", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/{token}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        # A handler's thread outlives shutdown (daemon_threads): those waiting for the lock answer 409
        # instead of beginning, and the action under way is let finish before the run is torn down.
        controls.closed = True
        with controls.lock:
            pass
