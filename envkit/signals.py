"""SIGTERM taken as Ctrl-C, for the callers that own a process: a cancelled CI job (SIGTERM) must take
the same path as an interrupt — tear down what was created, then exit. And the one way to run a clean-up
that a second Ctrl-C must not cut short.

Two ways to take SIGTERM: ``sigterm_as_interrupt()``, a block (the CLI: its command owns the process), and
``trap_sigterm()``, an install that returns its own undo (the pytest plugin: from its first bring-up to the
end of the session, and only where nobody else handles SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

__all__ = ["Terminated", "despite_interrupts", "sigterm_as_interrupt", "trap_sigterm"]

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered the way Ctrl-C is (callers can still tell the two apart)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def trap_sigterm(*, unless_handled: bool = False) -> Callable[[], None] | None:
    """Make SIGTERM raise ``Terminated`` in the main thread until the returned function is called (it
    puts the previous handler back, once). Returns None, and changes nothing, outside the main thread —
    and, with ``unless_handled``, when the program already has a SIGTERM handler of its own."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if unless_handled and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            signal.signal(signal.SIGTERM, previous)

    return restore


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (elsewhere: no change)."""
    restore = trap_sigterm()
    try:
        yield
    finally:
        if restore is not None:
            restore()


def despite_interrupts(cleanup: Callable[[], T], attempts: int = 3) -> tuple[bool, T | None]:
    """Run ``cleanup``, starting it again when a Ctrl-C (or SIGTERM) cuts it short, up to ``attempts``
    times: a user pressing Ctrl-C twice must not leave half a run. Returns (finished, its result);
    (False, None) when every attempt was interrupted — the caller must then not claim success."""
    for _ in range(attempts):
        try:
            return True, cleanup()
        except KeyboardInterrupt:
            continue
    return False, None
