"""The backend contract for ``Backend.exec_stream`` (capability INTERACTIVE_EXEC): stdin in, output out
as it comes, the exit code, a terminal with its size. Part of ``BackendContract``; a harness's ``play``
tells the fake what the command does, a real engine runs it."""

from __future__ import annotations

import io
import os
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import pytest

from envkit.backends.base import Backend, Capability, ExecSession
from envkit.errors import Conflict

if TYPE_CHECKING:
    from collections.abc import Callable

    from .backend_contract import Harness

__all__ = ["ExecStreamContract", "Recorder"]


class ExecStreamContract:
    """Mixed into ``BackendContract`` (which provides ``container``, ``refused`` and the fixtures)."""

    container: Callable[..., str]
    refused: Callable[[Backend, Capability, Callable[[], object]], bool]

    def _session(self, b: Backend, ident: str, command: tuple[str, ...], stdin: int | None,
                 tty: bool = False) -> tuple[ExecSession, Recorder, Recorder]:
        out, err = Recorder(), Recorder()
        session = b.exec_stream(ident, command, stdin=stdin, stdout=cast(BinaryIO, out), stderr=cast(BinaryIO, err),
                                tty=tty)
        return session, out, err

    def test_exec_stream_passes_stdin_and_gives_the_exit_code(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        command = ("sh", "-c", "cat; echo oops >&2; exit 3")
        if self.refused(b, Capability.INTERACTIVE_EXEC, lambda: self._session(b, ident, command, None)):
            return

        def cat(cmd: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
            stdout.write(stdin.read())
            stderr.write(b"oops\n")
            return 3

        harness.play(f"envkit-{run}-svc", cat)
        read_end, write_end = os.pipe()
        os.write(write_end, b"select 42;\n")
        os.close(write_end)
        try:
            session, out, err = self._session(b, ident, command, read_end)
            assert session.wait() == 3
        finally:
            os.close(read_end)
        assert (out.data, err.data) == (b"select 42;\n", b"oops\n")
        harness.play(f"envkit-{run}-svc", lambda *_: 0)
        session, out, _ = self._session(b, ident, ("sh", "-c", "exit 0"), None)  # no stdin: none is read
        assert session.wait() == 0
        idle = self.container(harness, run, net, "idle", start=False)
        with pytest.raises(Conflict):
            self._session(b, idle, ("true",), None)

    def test_exec_stream_streams_output_as_it_comes(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        if not b.supports(Capability.INTERACTIVE_EXEC):
            return

        def prompt(cmd: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
            stdout.write(b"first\n")
            stdout.flush()
            stdout.write(b"got " + stdin.readline())
            return 0

        harness.play(f"envkit-{run}-svc", prompt)
        read_end, write_end = os.pipe()
        try:
            session, out, _ = self._session(b, ident, ("sh", "-c", 'echo first; read x; echo "got $x"'), read_end)
            codes: list[int] = []
            waiter = threading.Thread(target=lambda: codes.append(session.wait()))
            waiter.start()
            # "first" arrives while the command still waits for its input: streamed, not at the end
            assert out.seen(b"first\n", 30), out.data
            os.write(write_end, b"abc\n")
            os.close(write_end)
            write_end = -1
            waiter.join(30)
            assert codes == [0] and out.data == b"first\ngot abc\n"
        finally:
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)

    def test_exec_stream_with_a_terminal(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        if not b.supports(Capability.INTERACTIVE_EXEC):
            return
        sizes = getattr(b, "resizes", None)

        def stty(cmd: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
            stdin.readline()
            rows, columns = sizes[-1] if sizes else (0, 0)
            stdout.write(f"{'tty' if tty else 'pipe'} {rows} {columns}\r\n".encode())
            return 5

        harness.play(f"envkit-{run}-svc", stty)
        read_end, write_end = os.pipe()
        try:
            command = ("sh", "-c", 'read x; test -t 1 && printf "tty "; stty size; exit 5')
            session, out, _ = self._session(b, ident, command, read_end, tty=True)
            codes: list[int] = []
            waiter = threading.Thread(target=lambda: codes.append(session.wait()))
            waiter.start()
            session.resize(30, 100)
            time.sleep(0.2)  # the resize is its own call; then the command looks
            os.write(write_end, b"\n")
            waiter.join(30)
            assert codes == [5]
            assert b"tty 30 100\r\n" in out.data, out.data
        finally:
            os.close(read_end)
            os.close(write_end)


class Recorder(io.RawIOBase):
    """A binary stream that keeps what is written, and says when something has arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self._arrived = threading.Condition()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self._arrived:
            self.data += bytes(data)
            self._arrived.notify_all()
        return len(data)

    def seen(self, text: bytes, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: text in self.data, timeout)
