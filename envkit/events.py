"""What the core reports while it works. The CLI and the pytest plugin render events; the core never
writes to a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Event", "EventSink", "ignore"]


@dataclass(frozen=True)
class Event:
    kind: str  # plan | step-start | step-done | step-failed | build-line | rollback | teardown | removed | note
    run_id: str
    message: str
    step: str = ""
    service: str = ""
    seconds: float = 0.0  # how long the step took (step-done)
    at: float = field(default_factory=time.monotonic)


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default sink."""
