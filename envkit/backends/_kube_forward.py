"""Port-forwards: a pod's port as a listening port on 127.0.0.1, as ``kubectl port-forward`` does.

Each ``Forward`` listens on an ephemeral port of 127.0.0.1; every connection accepted there gets its
own stream to the pod's port (``open_stream``: the client's ``portforward`` websocket in the backend,
a plain socket in the tests) and bytes are copied both ways until either side closes. Forwards live
as long as the backend (``close``) or their pod (``stop``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Forward", "Stream"]


class Stream(Protocol):
    """What ``open_stream`` returns: a connected socket-like object to the pod's port."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class Forward:
    def __init__(self, open_stream: Callable[[], Stream], name: str) -> None:
        self.open_stream = open_stream
        self.name = name
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._streams: set[Stream] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"envkit-forward-{name}", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: stop
            threading.Thread(target=self._serve, args=(client,), name=f"envkit-forward-{self.name}", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
        try:
            stream = self.open_stream()
        except Exception:  # the pod is gone or not ready: the test's connection is refused, as a closed port would be
            self._drop(client)
            return
        with self._lock:
            self._streams.add(stream)
        done = threading.Event()

        def up() -> None:  # test → pod; at the test's end of file the stream is shut, so that the copy back ends too
            with contextlib.suppress(OSError, Exception):
                while data := client.recv(65536):
                    stream.sendall(data)
            done.set()
            _shut(stream)

        threading.Thread(target=up, daemon=True).start()
        with contextlib.suppress(OSError, Exception):
            while not done.is_set() and (data := stream.recv(65536)):
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            stream.close()
        with self._lock:
            self._streams.discard(stream)
        self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            self._open.discard(client)
        with contextlib.suppress(OSError):
            client.close()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):  # wakes the accepting thread (a close alone leaves it listening)
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            clients, streams = list(self._open), list(self._streams)
        for c in clients:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for st in streams:
            _shut(st)


def _shut(stream: Stream) -> None:
    """End a stream both ways, waking a thread blocked reading it (a socket's shutdown; else its close)."""
    shutdown = getattr(stream, "shutdown", None)
    with contextlib.suppress(OSError, Exception):
        if shutdown is not None:
            shutdown(socket.SHUT_RDWR)
        else:
            stream.close()
