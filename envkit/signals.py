"""SIGTERM and SIGHUP taken as Ctrl-C, for the callers that own a process: a cancelled CI job (SIGTERM)
and a closed terminal or SSH session (SIGHUP) must take the same path as an interrupt — tear down what
was created, then exit. And the one way to run a clean-up that a second Ctrl-C must not cut short.

Two ways to take them: ``sigterm_as_interrupt()``, a block (the CLI: its command owns the process), and
``trap_sigterm()``, an install that returns its own undo (the pytest plugin: from its first bring-up to the
end of the session, and only where nobody else handles SIGTERM).

SIGHUP is taken only where it would otherwise end the process (its default action): under ``nohup``
(SIGHUP ignored) a hang-up changes nothing, as the user asked. A hang-up usually means the terminal is
gone — writing to it fails (EIO), and a clean-up that reports progress would stop half-way — so the
standard output and error that are that hung-up terminal are pointed at ``/dev/null`` first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

__all__ = ["Terminated", "despite_interrupts", "sigterm_as_interrupt", "trap_sigterm"]

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``signum``), delivered the way Ctrl-C is (callers can still tell them apart,
    and pass the same signal on)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _hung_up(fd: int) -> bool:
    """Whether ``fd`` is a terminal that has hung up (it then answers every call with EIO)."""
    try:
        termios.tcgetattr(fd)
    except termios.error as exc:
        return bool(exc.args) and exc.args[0] == errno.EIO
    return False


def _detach_from_terminal() -> None:
    """Point standard output and error at /dev/null where they are a terminal that hung up (one still
    there, as for a ``kill -HUP`` from elsewhere, keeps showing what happens)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if _hung_up(fd):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        _detach_from_terminal()
    raise Terminated(signum)


def trap_sigterm(*, unless_handled: bool = False) -> Callable[[], None] | None:
    """Make SIGTERM, and SIGHUP unless it is ignored, raise ``Terminated`` in the main thread until the
    returned function is called (it puts the previous handlers back, once). Returns None, and changes
    nothing, outside the main thread — and, with ``unless_handled``, when the program already has a
    SIGTERM handler of its own (it then handles ending itself)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if unless_handled and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated)}
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _raise_terminated)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return restore


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``Terminated`` (a KeyboardInterrupt) in the main thread
    (elsewhere: no change)."""
    restore = trap_sigterm()
    try:
        yield
    finally:
        if restore is not None:
            restore()


def despite_interrupts(cleanup: Callable[[], T], attempts: int = 3) -> tuple[bool, T | None]:
    """Run ``cleanup``, starting it again when a Ctrl-C (or SIGTERM, SIGHUP) cuts it short, up to ``attempts``
    times: a user pressing Ctrl-C twice must not leave half a run. Returns (finished, its result);
    (False, None) when every attempt was interrupted — the caller must then not claim success."""
    for _ in range(attempts):
        try:
            return True, cleanup()
        except KeyboardInterrupt:
            continue
    return False, None
