"""The fast path of a direction with no toxic on it: bytes go socket → pipe → socket inside the kernel
(``os.splice``, Linux), moved by the event loop's readiness callbacks, never copied through Python.

The link hands the two sockets over while their transports are idle (the source paused, nothing
buffered for the destination) and takes them back when a toxic arrives (``stop``: what the pipe holds
goes out first, then the bytes go through the toxics again) or the stream ends. At most one pipe's
worth (``PIPE_SIZE``) is in flight: a stalled reader stalls the sender through TCP flow control.

The loop's ``_add_reader``/``_remove_reader`` are used because the public ones refuse a socket a
transport owns; a registration is only removed while it is still this splice's (a closed socket's
number may already belong to another connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["PIPE_SIZE", "Splice", "available"]

PIPE_SIZE = 1 << 20
BURST = 16  # splices in a row per readiness event while data keeps coming
_F_SETPIPE_SZ = 1031
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def available(loop: asyncio.AbstractEventLoop) -> bool:
    """os.splice exists (Linux, Python ≥ 3.10) and the loop is asyncio's selector loop."""
    return hasattr(os, "splice") and all(hasattr(loop, n) for n in ("_add_reader", "_remove_reader", "_selector"))


class Splice:
    """Moves ``src`` → ``dst`` until the end of the stream (result True), an error (raised) or ``stop()``
    (result False, once what the pipe held has gone out)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket) -> None:
        self.loop: Any = loop
        self.src, self.dst = src.fileno(), dst.fileno()
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a smaller pipe (the default 64 kB) works too, in more hops
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.held = 0  # bytes in the pipe; the source is read only when it is empty
        self.stopping = False
        self.reading = self.writing = self.closed = False
        self.done: asyncio.Future[bool] = loop.create_future()

    def run(self) -> asyncio.Future[bool]:
        self._reading(True)
        return self.done

    def stop(self) -> None:
        """Read no more; finish once the pipe is empty."""
        self.stopping = True
        if not self.held:
            self._finish(False)
        else:
            self._reading(False)  # the writer callback empties the pipe, then finishes

    def close(self) -> None:
        self._finish(False)

    # -- the loop's callbacks
    def _readable(self) -> None:
        for _ in range(BURST):  # while the socket has more, without a trip through the loop each time
            try:
                n = os.splice(self.src, self.w, PIPE_SIZE, flags=_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                self._finish(exc=exc)
                return
            if n == 0:
                self._finish(True)  # the end of the stream (the pipe is empty: it is read only then)
                return
            self.held += n
            if not self._flush():
                return


    def _flush(self) -> bool:
        """Empty the pipe into ``dst``; True when it is empty and reading goes on."""
        while self.held:
            try:
                self.held -= os.splice(self.r, self.dst, self.held, flags=_FLAGS)
            except BlockingIOError:
                self._reading(False)
                self._writing(True)
                return False
            except OSError as exc:
                self._finish(exc=exc)
                return False
        self._writing(False)
        if self.stopping:
            self._finish(False)
            return False
        self._reading(True)
        return True

    # -- registrations
    def _reading(self, on: bool) -> None:
        self._register(on, self.src, self._readable, writer=False)

    def _writing(self, on: bool) -> None:
        self._register(on, self.dst, self._flush, writer=True)

    def _register(self, on: bool, fd: int, callback: Callable[[], object], writer: bool) -> None:
        if on == (self.writing if writer else self.reading) or self.closed:
            return
        if on:
            try:
                (self.loop._add_writer if writer else self.loop._add_reader)(fd, callback)
            except (OSError, ValueError) as exc:
                self._finish(exc=exc if isinstance(exc, OSError) else OSError(str(exc)))
                return
        else:
            with contextlib.suppress(KeyError, ValueError):
                handle = self.loop._selector.get_key(fd).data[1 if writer else 0]
                if handle is not None and getattr(handle, "_callback", None) == callback:
                    (self.loop._remove_writer if writer else self.loop._remove_reader)(fd)
        if writer:
            self.writing = on
        else:
            self.reading = on

    def _finish(self, result: bool = False, exc: BaseException | None = None) -> None:
        if self.closed:
            return
        self._reading(False)
        self._writing(False)
        self.closed = True
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.done.done():  # cancelled with the task awaiting it
            return
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(result)
