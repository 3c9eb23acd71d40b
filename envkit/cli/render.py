"""Turning core events into terminal lines (stderr), so stdout stays clean for --json and CMD output.

The renderer reads events' typed fields (kind, phase, action, services, target, duration, detail) to
decide what to show; it prints ``message`` as it comes and never parses it, nor step ids.
"""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.markup import escape

from envkit.events import Event
from envkit.text import strip_ansi

__all__ = ["Renderer"]

#: step actions whose end is shown without --verbose: images, and services becoming ready or done
SHOWN = frozenset({"build", "pull", "ready", "complete", "seed"})
IMAGE = {"build": "building", "pull": "pulling"}


class Renderer:
    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        with contextlib.suppress(OSError):  # the terminal or pipe is gone: progress must never stop a teardown
            self._render(event)

    def _render(self, event: Event) -> None:
        c = self.console
        if event.kind == "plan":
            c.print(f"[bold]{escape(event.message)}[/]")
        elif event.kind == "step":
            self._step(event)
        elif event.kind == "output":
            if self.verbose:
                c.print(f"    [dim]{escape(strip_ansi(event.detail))}[/]")
        elif event.kind in ("rollback", "note"):
            c.print(f"[yellow]{escape(event.message)}[/]")
        elif event.kind == "teardown":
            c.print(f"[dim]{escape(event.message)}[/]" + (f" [dim]({event.duration:.2f}s)[/]" if event.duration else ""))
        elif event.kind == "removed" and self.verbose:
            c.print(f"  [dim]{escape(event.message)}[/]")

    def _step(self, event: Event) -> None:
        c = self.console
        if event.phase == "start":
            if event.action in IMAGE:
                c.print(f"  [cyan]…[/] {IMAGE[event.action]} {escape(event.target)} "
                        f"for {escape(', '.join(event.services))}")
            elif event.action == "seed":
                c.print(f"  [cyan]…[/] seeding {escape(event.service)}: {escape(event.detail)}")
            elif self.verbose:
                c.print(f"  [dim]… {escape(event.message)}[/]")
        elif event.phase == "done":
            if event.action in SHOWN or self.verbose:
                c.print(f"  [green]✓[/] {escape(event.message)} [dim]({event.duration:.2f}s)[/]")
        elif event.phase == "failed":
            c.print(f"  [red]✗[/] {escape(event.message)}")
