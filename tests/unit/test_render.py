"""The CLI renderer decides what to show from events' typed fields, never from their text."""

from __future__ import annotations

import io

from rich.console import Console

from envkit.cli.render import Renderer
from envkit.events import Event


def render(*events: Event, verbose: bool = False) -> list[str]:
    out = io.StringIO()
    renderer = Renderer(Console(file=out, width=200, no_color=True, highlight=False), verbose)
    for event in events:
        renderer(event)
    return out.getvalue().splitlines()


def test_an_image_step_names_its_image_and_every_service_it_serves() -> None:
    # the message is left unread: what the line says comes from action, target and services
    start = Event("step", "r1", "anything at all", phase="start", action="build", target="envkit/app:1",
                  services=("migrate", "api"), step="s1")
    assert render(start) == ["  … building envkit/app:1 for migrate, api"]
    pull = Event("step", "r1", "", phase="start", action="pull", target="redis:7", service="cache",
                 services=("cache",), step="s2")
    assert render(pull) == ["  … pulling redis:7 for cache"]


def test_only_images_and_services_becoming_ready_are_shown_unless_verbose() -> None:
    events = [
        Event("step", "r1", "created envkit-r1-db-1", phase="done", action="create", duration=0.1),
        Event("step", "r1", "db ready in 0.40s", phase="done", action="ready", service="db", replica=1,
              duration=0.5),
        Event("step", "r1", "migrate completed", phase="done", action="complete", duration=1.25),
        Event("step", "r1", "db usable", phase="done", action="usable", service="db"),
        Event("output", "r1", "Step 1/3", action="build", detail="Step 1/3"),
    ]
    assert render(*events) == ["  ✓ db ready in 0.40s (0.50s)", "  ✓ migrate completed (1.25s)"]
    assert render(*events, verbose=True) == [
        "  ✓ created envkit-r1-db-1 (0.10s)", "  ✓ db ready in 0.40s (0.50s)", "  ✓ migrate completed (1.25s)",
        "  ✓ db usable (0.00s)", "    Step 1/3",
    ]


def test_failures_rollback_and_teardown_are_always_shown() -> None:
    assert render(
        Event("step", "r1", "service db: exited with code 1", phase="failed", action="ready", service="db"),
        Event("rollback", "r1", "removing what run r1 created", phase="start"),
        Event("teardown", "r1", "removing 3 resources of run r1", phase="start", detail="3"),
        Event("removed", "r1", "removed network envkit-r1-default", target="envkit-r1-default", detail="network"),
        Event("teardown", "r1", "run r1 removed", phase="done", duration=0.75),
    ) == [
        "  ✗ service db: exited with code 1",
        "removing what run r1 created",
        "removing 3 resources of run r1",
        "run r1 removed (0.75s)",
    ]
