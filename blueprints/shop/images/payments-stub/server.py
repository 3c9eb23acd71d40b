"""Payments stub: an in-memory stand-in for an external payment gateway, on 0.0.0.0:8000.

    GET  /health   -> 200 {"status": "ok"}
    POST /charges  {"order_id": int, "amount_cents": int}
                   -> 201 {"id": "ch_<n>", "status": "captured", "order_id": ..., "amount_cents": ...}
                   -> 402 {"error": "declined"}            when amount_cents <= 0
                   -> 400 {"error": "<what is wrong>"}     body not a JSON object with those two integers
    GET  /charges  -> 200 [<every charge captured so far, oldest first>]
    anything else  -> 404 {"error": "not found"} (405 for a known path with another method)

Declined attempts are answered but not stored. State lives in memory only: a new container starts empty.
One log line per request goes to stdout.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))
MAX_BODY = 1 << 20

_lock = threading.Lock()
_charges: list[dict] = []


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Handler(BaseHTTPRequestHandler):
    server_version = "payments-stub/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # one line per request, to stdout
        print(f"{self.address_string()} {format % args}", flush=True)

    def _send(self, status: int, payload: object) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/charges":
            with _lock:
                self._send(200, list(_charges))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(400, {"error": "bad Content-Length"})
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/health":
            self._send(405, {"error": "method not allowed"})
            return
        if path != "/charges":
            self._send(404, {"error": "not found"})
            return
        try:
            req = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            self._send(400, {"error": "body is not valid JSON"})
            return
        ok = isinstance(req, dict) and _is_int(req.get("order_id")) and _is_int(req.get("amount_cents"))
        if not ok:
            self._send(400, {"error": 'expected {"order_id": int, "amount_cents": int}'})
            return
        if req["amount_cents"] <= 0:
            self._send(402, {"error": "declined"})
            return
        with _lock:
            charge = {
                "id": f"ch_{len(_charges) + 1}",
                "status": "captured",
                "order_id": req["order_id"],
                "amount_cents": req["amount_cents"],
            }
            _charges.append(charge)
        self._send(201, charge)

    def do_PUT(self) -> None:
        self._send(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT


def main() -> None:
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"payments-stub: listening on 0.0.0.0:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
