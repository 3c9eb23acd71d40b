"""Progress of ``up`` / ``run`` on stderr: one live line per service on a terminal, plain lines elsewhere.

On a terminal (``--progress auto`` or ``live``) each service has one line, redrawn in place: what it
is doing (building with the build's last line, pulling, creating, starting, waiting with what the
readiness probe last saw, seeding …, ready or completed, failed with why) and for how long. When it is
done a summary table follows (service, address, ready after). Not on a terminal (CI logs, pipes) or
with ``--progress plain``, ``Renderer`` prints one line per event that matters; ``--quiet`` prints
nothing but errors. Colours follow the console (``NO_COLOR`` turns them off; rich reads it).

Everything is read from the events' typed fields (``kind``, ``phase``, ``action``, ``services``,
``detail``, ``at``); a step action this module does not know (a kind of step added later) is shown by
its name.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from envkit.cli.render import Renderer
from envkit.events import Event, EventSink

if TYPE_CHECKING:
    from envkit.api import Environment

__all__ = ["MODES", "LiveProgress", "Tracker", "progress", "sink", "summary"]

MODES = ("auto", "live", "plain", "quiet")
#: what a service is doing while a step of this action runs (unknown actions: their own name)
DOING = {"build": "building", "pull": "pulling", "create": "creating", "start": "starting", "release": "starting",
         "ready": "waiting", "complete": "running", "seed": "seeding", "snapshot": "snapshotting",
         "restore": "restoring"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class Row:
    service: str
    state: str = "pending"  # a DOING value, or built / pulled / ready / completed / failed
    detail: str = ""
    began: float | None = None  # event clock (time.monotonic)
    ended: float | None = None
    ready_after: float | None = None  # seconds from the first event of the run
    usable: bool = False  # its dependants may start: nothing more will happen to it
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))

    @property
    def final(self) -> bool:
        return self.usable or self.state == "failed"


class Tracker:
    """What each service is doing, from the events (the sink); ``lines`` prints the events it does not
    show itself (plain mode: all of them)."""

    def __init__(self, lines: EventSink, shows_steps: bool) -> None:
        self.lines = lines
        self.shows_steps = shows_steps
        self.rows: dict[str, Row] = {}
        self.t0: float | None = None
        self.lock = threading.Lock()
        self.failed = False

    def _row(self, service: str, at: float) -> Row:
        row = self.rows.get(service)
        if row is None:
            row = self.rows[service] = Row(service)
        if row.began is None:
            row.began = at
        return row

    def __call__(self, event: Event) -> None:
        with self.lock:
            if self.t0 is None:
                self.t0 = event.at
            if event.kind == "step" and event.services:
                self._step(event)
            elif event.kind == "output" and event.services:
                line = _ANSI.sub("", event.detail).strip()
                if line:
                    for s in event.services:
                        self._row(s, event.at).detail = line
        if event.kind == "step" and event.phase == "failed":
            self.failed = True
        if not self.shows_steps or event.kind not in ("step", "output"):
            self.lines(event)

    def _step(self, event: Event) -> None:
        for service in event.services:
            row = self._row(service, event.at)
            if row.final:
                continue
            if event.phase == "start" and event.action != "usable":
                row.state, row.detail, row.ended = DOING.get(event.action, event.action), "", None
                if event.action in ("build", "pull"):
                    row.detail = event.target
            elif event.phase == "progress":
                row.detail = event.detail
            elif event.phase == "failed":
                row.state, row.detail, row.ended = "failed", event.detail or event.message, event.at
            elif event.phase == "done" and event.action in ("build", "pull"):
                row.state, row.detail = "built" if event.action == "build" else "pulled", ""
            elif event.phase == "done" and event.action in ("ready", "complete", "usable"):
                if event.action != "usable":
                    row.state = "ready" if event.action == "ready" else "completed"
                elif row.state not in ("ready", "completed"):
                    row.state = "ready"
                row.usable = event.action == "usable"
                row.detail, row.ended, row.ready_after = "", event.at, event.at - (self.t0 or event.at)


class LiveProgress(Tracker):
    """The terminal view: a context manager around the work, redrawing one line per service."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        super().__init__(Renderer(console, verbose), shows_steps=True)  # plan, rollback, notes: as lines
        self.console = console
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=8, transient=True,
                         redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        if self.rows and (exc[0] is not None or self.failed):
            self.console.print(self.render(final=True))  # what each service had reached when it stopped

    def render(self, final: bool = False) -> RenderableType:
        now = time.monotonic()
        table = Table.grid(padding=(0, 1))
        table.add_column(width=1)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(style="dim", no_wrap=True, overflow="ellipsis", ratio=1)
        with self.lock:
            rows = list(self.rows.values())
        for row in rows:
            icon: RenderableType
            if row.state == "failed":
                icon = Text("✗", style="red")
            elif row.state in ("ready", "completed"):
                icon = Text("✓", style="green")
            elif final or row.state == "pending":
                icon = Text("·", style="dim")
            else:
                icon = row.spinner
            elapsed = ((row.ended or now) - row.began) if row.began is not None else 0.0
            state = Text(row.state, style={"failed": "red", "ready": "green", "completed": "green"}.get(row.state, ""))
            table.add_row(icon, row.service, state, f"{elapsed:.1f}s", Text(row.detail))
        return Group(table) if rows else Text("")


@contextmanager
def progress(console: Console, mode: str = "auto", verbose: bool = False) -> Iterator[Tracker | None]:
    """The sink for ``mode`` (see ``MODES``), which ``summary`` reads afterwards; None when quiet."""
    if mode == "quiet":
        yield None
        return
    live = mode == "live" or (mode == "auto" and console.is_terminal and not console.is_dumb_terminal)
    if not live:
        yield Tracker(Renderer(console, verbose), shows_steps=False)
        return
    with LiveProgress(console, verbose) as view:
        yield view


def sink(tracker: Tracker | None) -> EventSink:
    return tracker if tracker is not None else (lambda event: None)


def summary(console: Console, env: Environment, view: Tracker | None) -> None:
    """The table at the end of ``up``: each service, where it listens, when it was ready (not when quiet)."""
    if view is None:
        return
    table = Table("SERVICE", "ADDRESS", "READY", box=None, header_style="bold")
    rows = view.rows if view is not None else {}
    for service in env.services:
        addresses = []
        for c in env.info.replicas(service):
            for key, bound in sorted(c.ports.items(), key=lambda kv: str(kv[0])):
                addresses.append(f"{env.info.host}:{bound.port} → {key}")
        row = rows.get(service)
        when = "—" if row is None or row.ready_after is None else f"{row.ready_after:.2f}s"
        if row is not None and row.state == "completed":
            when += " (completed)"
        table.add_row(escape(service), escape(", ".join(addresses) or "—"), when)
    console.print(table)
