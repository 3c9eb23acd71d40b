"""An interactive exec over a hijacked engine connection (a socket), as ``docker exec -i/-t`` does it:
stdin copied in by a thread until end of file (then the write side is shut, which closes the command's
stdin), output copied out as it arrives — framed (8-byte headers naming stdout or stderr) without a
TTY, one raw stream with one. Engine-neutral: the backend gives the socket and how to ask for the
exit code and to resize."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from envkit.backends.base import ExecSession

__all__ = ["SocketSession"]

CHUNK = 65536


class SocketSession(ExecSession):
    def __init__(self, sock: Any, stdin: int | None, stdout: BinaryIO, stderr: BinaryIO, framed: bool,
                 exit_code: Callable[[], int], resize: Callable[[int, int], None] | None = None) -> None:
        self._holder = sock  # keeps the HTTP response (and so the connection) alive
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._stdin, self._stdout, self._stderr = stdin, stdout, stderr
        self._framed = framed
        self._exit_code = exit_code
        self._resize = resize
        self._done = threading.Event()

    def resize(self, rows: int, columns: int) -> None:
        if self._resize is not None and rows > 0 and columns > 0:
            with contextlib.suppress(Exception):  # best effort: the command may have ended already
                self._resize(rows, columns)

    def wait(self) -> int:
        feeder = None
        if self._stdin is not None:
            feeder = threading.Thread(target=self._feed, name="envkit-exec-stdin", daemon=True)
            feeder.start()
        else:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        try:
            self._drain()
        finally:
            self._done.set()
            if feeder is not None:
                feeder.join(timeout=1)
            for end in (self._holder, self._sock):
                with contextlib.suppress(OSError):
                    end.close()
        return self._exit_code()

    def _feed(self) -> None:
        """stdin → the command, until end of file or the end of the command."""
        assert self._stdin is not None
        try:
            while not self._done.is_set():
                ready, _, _ = select.select([self._stdin], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(self._stdin, CHUNK)
                if not data:
                    break
                self._sock.sendall(data)
        except OSError:  # the command ended and closed its side, or stdin went away
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)  # end of file for the command's stdin

    def _drain(self) -> None:
        """The command's output → stdout / stderr, flushed as it comes, until the engine closes."""
        buffer = b""
        while True:
            try:
                data = self._sock.recv(CHUNK)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            if not self._framed:
                self._write(self._stdout, data)
                continue
            buffer += data
            while len(buffer) >= 8:
                size = int.from_bytes(buffer[4:8], "big")
                if len(buffer) < 8 + size:
                    break
                target = self._stderr if buffer[0] == 2 else self._stdout
                self._write(target, buffer[8:8 + size])
                buffer = buffer[8 + size:]

    @staticmethod
    def _write(target: BinaryIO, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):  # e.g. `envkit exec ... | head -1`
            target.write(data)
            target.flush()
