"""What the core reports while it works. The CLI and the pytest plugin render events; the core never
writes to a terminal.

Consumers read the typed fields (``kind``, ``phase``, ``action``, ``service``, ``replica``,
``duration``, ``detail``); ``message`` is ready-made text for display and is never parsed, and ``step``
is an opaque id for pairing a step's start with its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Event", "EventKind", "EventSink", "Phase", "ignore"]

EventKind = Literal[
    "plan",  # a plan is about to run (detail: the number of steps)
    "step",  # a plan step: phase start | progress | done | failed
    "output",  # a line of a step's own output (e.g. an image build): detail is the line
    "rollback",  # a failed or interrupted up removes what it made
    "teardown",  # removal of a run: phase start | done
    "removed",  # one resource removed (detail: its kind, target: its name)
    "note",  # something the user should read (message)
]
#: a step's ``progress`` events come between its start and its end, each time what it waits on changes:
#: a readiness wait's detail is the probe's last result ("tcp 5432: Connection refused", "GET /health: 503")
Phase = Literal["start", "progress", "done", "failed", ""]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    run_id: str
    message: str = ""  # human text, for display only
    phase: Phase = ""
    action: str = ""  # a step's action: build, pull, network, volume, create, start, release, ready, ...
    service: str = ""  # the service the event is about ("" when none, e.g. a network)
    replica: int | None = None
    services: tuple[str, ...] = ()  # every service a shared step serves (one image built for several)
    target: str = ""  # the engine name of what the step makes or waits for (image tag, container name)
    duration: float = 0.0  # seconds: how long the step (or teardown) took, on done / failed
    detail: str = ""  # what happened, briefly: "gated", a probe's last result, a build line, an error
    step: str = ""  # the step's id: opaque, for pairing start and end
    at: float = field(default_factory=time.monotonic)


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default sink."""
