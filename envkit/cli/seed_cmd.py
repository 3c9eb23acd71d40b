"""``envkit seed RUN [SVC…]``: run the seed steps of a live run again."""

from __future__ import annotations

import click

__all__ = ["seed"]


@click.command()
@click.argument("run")
@click.argument("services", nargs=-1)
@click.option("-v", "--verbose", is_flag=True, help="Show every step.")
def seed(run: str, services: tuple[str, ...], verbose: bool) -> None:
    """Run the seed steps of RUN's services again (all that have them, or the SERVICES named).

    The steps are read from the run's blueprint file again (its path is on the run's labels), with the
    current environment for ${VAR}. A failing step names the service and the step and shows its output;
    the run is left as it is.
    """
    from envkit import api
    from envkit.cli.commands import Session, err
    from envkit.cli.render import Renderer

    backend = click.get_current_context().ensure_object(Session).connect()
    the_plan = api.seed(run, services, on_event=Renderer(err, verbose), backend=backend)
    seeded = sorted({s.services[0] for s in the_plan.steps if s.action == "seed"})
    count = sum(s.action == "seed" for s in the_plan.steps)
    err.print(f"[bold green]run {run}: {count} seed steps done[/]" + (f" ({', '.join(seeded)})" if seeded else ""))
