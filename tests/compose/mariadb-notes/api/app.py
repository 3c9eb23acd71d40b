import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import cache, db

QUEUE = os.environ.get("QUEUE_NAME", "notes:new")


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        try:
            if self.path == "/health":
                with db() as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                cache().ping()
                return self._send(200, {"status": "ok", "app": os.environ.get("APP_NAME", "?")})
            if self.path == "/notes":
                with db() as conn, conn.cursor() as cur:
                    cur.execute("SELECT id, body FROM notes ORDER BY id")
                    return self._send(200, [{"id": i, "body": b} for i, b in cur.fetchall()])
            if self.path == "/processed":
                with db() as conn, conn.cursor() as cur:
                    cur.execute("SELECT note_id, words FROM processed ORDER BY note_id")
                    return self._send(200, {str(i): w for i, w in cur.fetchall()})
            return self._send(404, {"error": "not found"})
        except Exception as exc:  # the client sees why
            return self._send(503, {"error": str(exc)})

    def do_POST(self):
        if self.path != "/notes":
            return self._send(404, {"error": "not found"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["body"]
        try:
            with db() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
                note_id = cur.lastrowid
            cache().rpush(QUEUE, note_id)
        except Exception as exc:
            return self._send(503, {"error": str(exc)})
        return self._send(201, {"id": note_id})

    def log_message(self, fmt, *args):
        print("api:", fmt % args, flush=True)


if __name__ == "__main__":
    print("api listening on 8000", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
