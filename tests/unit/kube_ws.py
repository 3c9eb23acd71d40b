"""A one-connection websocket endpoint on 127.0.0.1 that answers as the API server's exec does
(the ``v4.channel.k8s.io`` protocol: each binary frame is a channel byte and its data; channel 3 ends
with a metav1.Status that carries the exit code), so that the client's real ``stream`` code runs."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from typing import Any

__all__ = ["ExecServer"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class ExecServer:
    def __init__(self, stdout: bytes, stderr: bytes, exit_code: int) -> None:
        self.frames = [_frame(2, b"\x01" + stdout), _frame(2, b"\x02" + stderr)]
        status: dict[str, Any] = {"metadata": {}, "status": "Success"} if exit_code == 0 else {
            "metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {exit_code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}
        self.frames += [_frame(2, b"\x03" + json.dumps(status).encode()), _frame(8, b"\x03\xe8")]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request = ""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            self.request = data.decode()
            key = next(line.split(":", 1)[1].strip() for line in self.request.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
            for f in self.frames:
                conn.sendall(f)
            try:
                conn.settimeout(2)
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        self.listener.close()


def _read_frame(conn: socket.socket) -> tuple[int, bytes] | None:
    """One frame a client sent (masked, as clients must), or None when the connection is gone."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    try:
        b0, b1 = exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(exactly(2), "big")
        elif n == 127:
            n = int.from_bytes(exactly(8), "big")
        mask = exactly(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(exactly(n)))
    except (ConnectionError, OSError):
        return None
    return b0 & 0x0F, payload


class PortForwardServer:
    """Answers as the API server's port-forward does (``portforward.k8s.io``: per port a data and an error
    channel, each opened by a frame with the port number): bytes sent to the port come back upper-cased."""

    def __init__(self, port: int) -> None:
        self.pod_port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            request = data.decode()
            self.requests.append(request)
            key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: portforward.k8s.io\r\n\r\n").encode())
            number = self.pod_port.to_bytes(2, "little")
            conn.sendall(_frame(2, b"\x00" + number) + _frame(2, b"\x01" + number))
            while (frame := _read_frame(conn)) is not None:
                opcode, payload = frame
                if opcode == 8:
                    return
                if opcode == 2 and payload[:1] == b"\x00":
                    conn.sendall(_frame(2, b"\x00" + payload[1:].upper()))

    def stop(self) -> None:
        self.listener.close()
