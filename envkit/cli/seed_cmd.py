"""``envkit seed RUN [SVC…]``: run the seed steps of a live run again."""

from __future__ import annotations

from pathlib import Path

import click

from envkit.cli.envfiles import env_file_option

__all__ = ["seed"]


@click.command()
@click.argument("run")
@click.argument("services", nargs=-1)
@env_file_option
@click.option("-v", "--verbose", is_flag=True, help="Show every step.")
def seed(run: str, services: tuple[str, ...], env_files: tuple[Path, ...], verbose: bool) -> None:
    """Run the seed steps of RUN's services again (all that have them, or the SERVICES named).

    The steps are read from the run's blueprint file again (its path is on the run's labels), with the
    current environment for ${VAR} (give the --env-file files `up` was given). A failing step names the
    service and the step and shows its output; the run is left as it is.
    """
    from envkit import api
    from envkit.cli.commands import Session, err
    from envkit.cli.render import Renderer
    from envkit.cli.snapshot_cmd import run_blueprint

    backend = click.get_current_context().ensure_object(Session).connect()
    the_plan = api.seed_steps_again(backend, run, services, blueprint=run_blueprint(backend, run, env_files),
                                    on_event=Renderer(err, verbose))
    seeded = sorted({s.services[0] for s in the_plan.steps if s.action == "seed"})
    count = sum(s.action == "seed" for s in the_plan.steps)
    err.print(f"[bold green]run {run}: {count} seed steps done[/]" + (f" ({', '.join(seeded)})" if seeded else ""))
