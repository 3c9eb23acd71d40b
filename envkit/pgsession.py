"""A ``psql`` kept running inside a PostgreSQL container, for the template reset (``envkit.pgtemplate``).

A ``docker exec`` costs ~0.1 s of engine work before the first byte of SQL runs (create, start, attach,
inspect for the exit code); the swap itself is a few milliseconds of catalogue updates. So the process
that resets keeps one ``psql`` per container, started once over an exec whose stdin stays open
(``Backend.exec_stream``), and writes each script to it: a reset then costs one round trip on a socket
the process already holds, plus the SQL. No password, published port or client library is needed: the
session is the same local-socket superuser connection as the one-shot exec, so it works for any image
and topology the exec path works for, from any process (each opens its own).

Each script is followed by ``\\echo`` of a marker; ``run`` waits for its marker; ``send`` does not
wait. ``psql`` stops at the first error (``ON_ERROR_STOP``), so an error ends the session: ``run``
raises ``SessionEnded`` with the server's message. When the container goes away the session ends with it.

``swap`` keeps two per container: one for the swaps, one for the refills sent after each swap (the
next ready copy, then dropping the one swapped out). A swap that comes while a refill still copies
waits for that copy (the advisory lock of ``envkit.pgtemplate``), never longer than making a copy
itself, and never for the drop that follows it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from typing import BinaryIO, cast

from envkit.backends.base import Backend, Capability, ExecSession
from envkit.errors import EngineError
from envkit.pgtemplate import Postgres, refill_script, swap_script

__all__ = ["PsqlSession", "SessionEnded", "kept", "swap"]


class SessionEnded(EngineError):
    """The kept ``psql`` ended (an error in a script, the container stopped or went away)."""


class _Sink:
    """A writable end for the exec's output: keeps what came, wakes the waiters."""

    def __init__(self, changed: threading.Condition) -> None:
        self.data = bytearray()
        self._changed = changed

    def write(self, data: bytes) -> int:
        with self._changed:
            self.data += data
            self._changed.notify_all()
        return len(data)

    def flush(self) -> None:
        pass


class PsqlSession:
    """One ``psql`` as ``user`` on database ``postgres`` in ``container`` (exec as ``exec_user``)."""

    def __init__(self, backend: Backend, container: str, user: str, exec_user: str = "") -> None:
        self.container = container
        self._changed = threading.Condition()
        self._out, self._err = _Sink(self._changed), _Sink(self._changed)
        self._marks = itertools.count(1)
        self._lock = threading.RLock()  # one script at a time from this process; held to close stdin
        self._exit: int | None = None
        self._closed = False
        read, self._stdin = os.pipe()
        command = ("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres")
        try:
            session: ExecSession = backend.exec_stream(container, command, stdin=read,
                                                       stdout=cast(BinaryIO, self._out),
                                                       stderr=cast(BinaryIO, self._err), user=exec_user or None)
        except BaseException:
            os.close(read)
            os.close(self._stdin)
            raise
        self._thread = threading.Thread(target=self._wait, args=(session, read), name="envkit-psql", daemon=True)
        self._thread.start()

    def _wait(self, session: ExecSession, read: int) -> None:
        code = -1
        try:
            code = session.wait()
        except EngineError:
            pass
        finally:
            with self._changed:
                self._exit = code
                self._changed.notify_all()
            with contextlib.suppress(OSError):
                os.close(read)
            self.close()  # our end of its stdin too (once no script is being written to it)

    @property
    def alive(self) -> bool:
        return self._exit is None and not self._closed

    def send(self, script: str) -> None:
        """Queue ``script`` without waiting for it (it runs before whatever is sent after it)."""
        with self._lock:
            self._write(script + "\n")

    def run(self, script: str, timeout: float = 300.0) -> str:
        """Run ``script`` (after anything sent before it) and return its output."""
        with self._lock:
            mark = f"envkit-mark-{next(self._marks)}-{os.getpid()}"
            self._write(f"{script}\n\\echo {mark}\n")
            token = f"{mark}\n".encode()
            deadline = time.monotonic() + timeout
            with self._changed:
                while True:
                    at = self._out.data.find(token)
                    if at >= 0:
                        text = bytes(self._out.data[:at]).decode(errors="replace")
                        del self._out.data[:at + len(token)]
                        del self._err.data[:]
                        return text
                    if self._exit is not None:
                        raise SessionEnded(self._ended())
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.close()
                        raise SessionEnded(f"psql in container {self.container[:12]} did not answer within "
                                           f"{timeout:.0f}s")
                    self._changed.wait(left)

    def _write(self, text: str) -> None:
        if self._exit is not None or self._closed:
            raise SessionEnded(self._ended())
        try:
            os.write(self._stdin, text.encode())
        except OSError as exc:
            raise SessionEnded(f"psql in container {self.container[:12]} is gone: {exc}") from exc

    def _ended(self) -> str:
        said = (bytes(self._err.data) or bytes(self._out.data)).decode(errors="replace").strip()
        return (f"psql in container {self.container[:12]} ended (exit code {self._exit})"
                + (f": {said[-600:]}" if said else ""))

    def close(self) -> None:
        """End the session (its stdin closes; psql exits)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._stdin)


#: container id -> the (swap, refill) sessions this process keeps in it
_kept: dict[str, tuple[PsqlSession, PsqlSession]] = {}
_kept_lock = threading.Lock()


def kept(container: str) -> bool:
    """Whether this process holds a live swap session in the container: proof that the container is
    the same one and still runs (the session ends with it)."""
    pair = _kept.get(container)
    return pair is not None and pair[0].alive


def swap(backend: Backend, container: str, pg: Postgres, databases: list[str], keep: bool = True) -> None:
    """Swap ``databases`` back to their templates' state, through the kept sessions (opened on first
    use), and queue the refill. A session that ended (an error, a restart) is opened again once;
    ``keep=False``, or an engine without interactive exec: the one-shot exec (``Postgres.reset``)."""
    if not keep or Capability.INTERACTIVE_EXEC not in backend.capabilities:
        pg.reset(backend, container, databases)
        return
    for attempt in (1, 2):
        session, filler = _open(backend, container, pg)
        try:
            session.run(swap_script(databases))
        except SessionEnded as exc:
            session.close()  # the next one is opened in its place
            if attempt == 2:
                raise EngineError(f"reset from the template databases: {exc}") from exc
            continue
        try:
            filler.send(refill_script(databases))
        except SessionEnded:  # opened again by the next swap; that one clones the template itself
            filler.close()
        return


def _open(backend: Backend, container: str, pg: Postgres) -> tuple[PsqlSession, PsqlSession]:
    with _kept_lock:
        old = _kept.get(container)
        pair = tuple(s if s is not None and s.alive else PsqlSession(backend, container, pg.superuser, pg.exec_user)
                     for s in (old or (None, None)))
        _kept[container] = (pair[0], pair[1])
        return _kept[container]
