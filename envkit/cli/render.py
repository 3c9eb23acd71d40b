"""Turning core events into terminal lines (stderr), so stdout stays clean for --json and CMD output."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from envkit.events import Event

__all__ = ["Renderer"]


class Renderer:
    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        c = self.console
        if event.kind == "plan":
            c.print(f"[bold]{escape(event.message)}[/]")
        elif event.kind == "step-done":
            action = event.step.split(":", 1)[0]
            if action in ("ready", "complete", "image") or self.verbose:
                c.print(f"  [green]✓[/] {escape(event.message)} [dim]({event.seconds:.2f}s)[/]")
        elif event.kind == "step-start":
            if event.step.startswith("image:"):
                verb, _, tag = event.message.partition(" ")
                c.print(f"  [cyan]…[/] {'building' if verb == 'build' else 'pulling'} {escape(tag)} "
                        f"for {escape(event.service)}")
            elif self.verbose:
                c.print(f"  [dim]… {escape(event.message)}[/]")
        elif event.kind == "step-failed":
            c.print(f"  [red]✗[/] {escape(event.message)}")
        elif event.kind == "build-line":
            if self.verbose:
                c.print(f"    [dim]{escape(event.message)}[/]")
        elif event.kind in ("rollback", "teardown", "note"):
            c.print(f"[yellow]{escape(event.message)}[/]" if event.kind != "teardown" else
                    f"[dim]{escape(event.message)}[/]" + (f" [dim]({event.seconds:.2f}s)[/]" if event.seconds else ""))
        elif event.kind == "removed" and self.verbose:
            c.print(f"  [dim]{escape(event.message)}[/]")
