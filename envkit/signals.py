"""SIGTERM taken as Ctrl-C, for the callers that own a process: a cancelled CI job (SIGTERM) must take
the same path as an interrupt — tear down what was created, then exit. And the one way to run a clean-up
that a second Ctrl-C must not cut short."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

__all__ = ["Terminated", "despite_interrupts", "sigterm_as_interrupt"]

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered the way Ctrl-C is (callers can still tell the two apart)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
