"""A tiny HTTP server for the `hello` blueprint, standard library of python3-minimal only.

python3-minimal ships neither http.server nor json, so this speaks just enough HTTP/1.1 over a plain
socket: one request per connection, answered with Content-Length and `Connection: close`.

    GET /health -> 200 text/plain "ok"
    GET /       -> 200 application/json {"hello": "world", "hostname": "<container hostname>"}
    other paths -> 404; other methods -> 405; unreadable request -> 400
"""

import contextlib
import os
import socket
import sys
import threading

HOST, PORT = "0.0.0.0", int(os.environ.get("PORT", "8000"))
HOSTNAME = socket.gethostname()
MAX_HEAD = 16 * 1024


def json_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


ROOT_BODY = ('{"hello": "world", "hostname": ' + json_str(HOSTNAME) + "}\n").encode()
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def respond(conn: socket.socket, status: int, ctype: str, body: bytes, head_only: bool = False) -> None:
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    conn.sendall(head if head_only else head + body)


def handle(conn: socket.socket, addr: tuple) -> None:
    status = 400
    request_line = "-"
    try:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_HEAD:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        request_line = data.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            status = 400
            respond(conn, status, "text/plain", b"bad request\n")
            return
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status = 405
            respond(conn, status, "text/plain", b"method not allowed\n")
        elif path == "/health":
            status = 200
            respond(conn, status, "text/plain", b"ok", method == "HEAD")
        elif path == "/":
            status = 200
            respond(conn, status, "application/json", ROOT_BODY, method == "HEAD")
        else:
            status = 404
            respond(conn, status, "text/plain", b"not found\n", method == "HEAD")
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            conn.close()
        print(f'{addr[0]} "{request_line}" {status}', flush=True)


def main() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, PORT))
    srv.listen(128)
    print(f"hello: listening on {HOST}:{PORT} as {HOSTNAME}", flush=True)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=handle, args=(conn, addr), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
