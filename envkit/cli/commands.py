"""The commands. Each one parses arguments, calls ``envkit.api`` and renders the result.

``envkit.api`` (and with it the engine client) is imported inside the commands that use it, so that
``envkit validate`` does not pay for it. The engine comes from the context object (``Session``): a backend
injected by the caller (``main(argv, backend=...)``; the unit tests pass the fake one), or the one
``envkit.backends.connect()`` gives for ``--engine`` / ``ENVKIT_ENGINE``, connected on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from envkit import __version__, reaper
from envkit.cli.complete import blueprint_services, run_ids, run_services
from envkit.cli.progress import MODES, progress, sink, summary
from envkit.cli.render import Renderer
from envkit.errors import EnvkitError, UsageError
from envkit.outputs import dumps, mask, to_dotenv
from envkit.signals import Terminated, despite_interrupts, sigterm_as_interrupt

if TYPE_CHECKING:
    from envkit.api import Environment
    from envkit.backends.base import Backend


__all__ = ["Session", "cli"]

# Not a terminal (CI logs, pipes): wide enough that tables are never cut.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, width=None if sys.stderr.isatty() else 200)


@dataclass
class Session:
    """What every command of one CLI call shares: the engine (see the module's docstring)."""

    backend: Backend | None = None
    engine: str | None = None

    def connect(self) -> Backend:
        if self.backend is None:
            from envkit.backends import connect

            self.backend = connect(engine=self.engine)
        return self.backend


def _engine() -> Backend:
    """The engine of the running command, connected on first use."""
    return click.get_current_context().ensure_object(Session).connect()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envkit")
@click.option("--engine", metavar="NAME", help="The container engine to use (default: $ENVKIT_ENGINE, else docker).")
@click.pass_context
def cli(ctx: click.Context, engine: str | None) -> None:
    """A private, production-like container environment for every test run."""
    ctx.ensure_object(Session).engine = engine or None


blueprint_arg = click.argument("blueprint", type=click.Path(path_type=Path))


def progress_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("-q", "--quiet", is_flag=True, help="No progress: only errors (and the results on stdout).")(fn)
    return click.option("--progress", "progress_mode", type=click.Choice(MODES), default="auto", show_default=True,
                        help="live: one line per service, redrawn (auto on a terminal); plain: a line per event "
                             "(auto elsewhere, e.g. CI logs); quiet: as -q.")(fn)


@cli.command()
@blueprint_arg
def validate(blueprint: Path) -> None:
    """Check BLUEPRINT (a YAML file or a folder holding blueprint.yaml); lists every problem."""
    from envkit.blueprint import load

    bp = load(blueprint)
    out.print(f"{escape(str(bp.file))}: ok — blueprint '{bp.name}', {len(bp.services)} services, "
              f"{len(bp.networks)} networks, {len(bp.outputs)} outputs")


@cli.command()
@blueprint_arg
@click.option("--name", help="Run id to plan for (default: a new one).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--offline", is_flag=True, help="Do not ask the engine which images exist.")
def plan(blueprint: Path, name: str | None, only: tuple[str, ...], offline: bool) -> None:
    """Print what `up` would do, without doing it."""
    from envkit import api

    backend = None if offline else _engine()
    out.print(escape(api.plan(blueprint, name=name, only=only, backend=backend).text()))


def _write(path: Path, text: str, append: bool = False) -> None:
    try:
        with open(path, "a" if append else "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def _github_output(values: dict[str, str]) -> str:
    """GitHub's own format: NAME=value, or a heredoc for values with line breaks (no dotenv escapes)."""
    lines = []
    for key, value in values.items():
        if "\n" in value:
            fence = "ENVKIT_EOF"
            while fence in value:
                fence += "_"
            lines.append(f"{key}<<{fence}\n{value}\n{fence}")
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _print_outputs(env: Environment, as_json: bool, env_file: Path | None, github_output: bool) -> None:
    values = env.outputs
    if env_file:
        _write(env_file, to_dotenv(values))
    if github_output and os.environ.get("GITHUB_OUTPUT"):
        _write(Path(os.environ["GITHUB_OUTPUT"]), _github_output({"ENVKIT_RUN": env.run_id, **values}), append=True)
    if as_json:
        out.print_json(dumps(env.document()))
        return
    out.print(f"[bold green]run {env.run_id} is ready[/]")
    width = max((len(k) for k in values), default=0)
    for key, value in values.items():
        out.print(f"  {key:<{width}}  {escape(mask(key, value))}")
    out.print(f"[dim]remove it with: envkit down {env.run_id}[/]")


@cli.command()
@blueprint_arg
@click.option("--name", help="Run id (default: <blueprint>-<6 hex>).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Deadline for the whole environment to be ready.")
@click.option("--keep-on-failure", is_flag=True, help="Leave a failed run in place for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the run document (schema envkit.run/v1).")
@click.option("--env-file", type=click.Path(path_type=Path), help="Write the outputs as KEY=value lines.")
@click.option("--github-output", is_flag=True, help="Append the outputs to $GITHUB_OUTPUT when it is set.")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and the build output.")
@progress_options
@click.option("--no-seed", is_flag=True, help="Skip the services' seed steps.")
def up(blueprint: Path, name: str | None, only: tuple[str, ...], timeout: float | None, keep_on_failure: bool,
       as_json: bool, env_file: Path | None, github_output: bool, verbose: bool, progress_mode: str,
       quiet: bool, no_seed: bool) -> None:
    """Bring BLUEPRINT up as a new isolated run and wait until every service is ready."""
    from envkit import api

    with sigterm_as_interrupt(), progress(err, "quiet" if quiet else progress_mode, verbose) as view:
        env = api.up(blueprint, name=name, only=only, timeout=timeout, keep_on_failure=keep_on_failure,
                     on_event=sink(view), backend=_engine(), seed=not no_seed)
        env.detach()  # the CLI hands the run over; `envkit down` removes it
    summary(err, env, view)
    _print_outputs(env, as_json, env_file, github_output)


@cli.command()
@click.argument("runs", nargs=-1, shell_complete=run_ids)
@click.option("--all", "all_runs", is_flag=True, help="Every envkit run on this engine.")
@click.option("-v", "--verbose", is_flag=True)
def down(runs: tuple[str, ...], all_runs: bool, verbose: bool) -> None:
    """Remove runs and everything they created."""
    if not runs and not all_runs:
        raise UsageError("name the runs to remove (see `envkit ls`), or pass --all")
    from envkit import api

    counts = api.down(list(runs), all_runs=all_runs, on_event=Renderer(err, verbose), backend=_engine())
    out.print(f"removed {counts['container']} containers, {counts['network']} networks, "
              f"{counts['volume']} volumes")


def _attach(run: str) -> Environment:
    from envkit import api

    return api.attach(run, backend=_engine())


@cli.command(name="ls")
@click.option("--json", "as_json", is_flag=True)
def ls_(as_json: bool) -> None:
    """List the envkit runs on this engine."""
    from envkit import api

    runs = api.ls(backend=_engine())
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in runs]))
        return
    table = Table("RUN", "BLUEPRINT", "CREATED", "CONTAINERS", "RUNNING", "NETWORKS", "VOLUMES", box=None)
    for r in runs:
        table.add_row(r.run_id, r.blueprint, r.created_at, str(r.containers), str(r.running), str(r.networks),
                      str(r.volumes))
    out.print(table)


@cli.command()
@click.argument("run", shell_complete=run_ids)
@click.option("--json", "as_json", is_flag=True)
def status(run: str, as_json: bool) -> None:
    """Services of RUN: state, readiness and host ports."""
    env = _attach(run)
    rows = env.status()
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in rows]))
        return
    table = Table("SERVICE", "CONTAINER", "KIND", "STATE", "READY", "PORTS", box=None)
    for r in rows:
        ports = ", ".join(f"{ip}:{port}->{key}" for key, (ip, port) in sorted(r.ports.items()))
        color = "green" if r.ready in ("ready", "completed") else "red"
        table.add_row(r.service, r.container, r.kind, r.state, f"[{color}]{escape(r.ready)}[/]", ports)
    out.print(table)


@cli.command()
@click.argument("run", shell_complete=run_ids)
@click.argument("service", required=False, shell_complete=run_services)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs(run: str, service: str | None, follow: bool, tail: int | None) -> None:
    """Print the logs of RUN's services (or one SERVICE)."""
    env = _attach(run)
    if not follow:
        sys.stdout.write(env.logs(service, tail=tail))
        return
    names = [service] if service else list(env.services)
    targets = [(n, r) for n in names for r in range(1, len(env.info.replicas(n)) + 1)] or [(n, 1) for n in names]
    lock = threading.Lock()

    failures: list[EnvkitError] = []

    def pump(name: str, replica: int) -> None:
        many = len(env.info.replicas(name)) > 1
        prefix = (f"{name}-{replica}" if many else name) + " | " if (not service or many) else ""
        try:
            for chunk in env.follow(name, tail, replica):
                with lock:
                    sys.stdout.write("".join(f"{prefix}{line}\n" for line in chunk.splitlines()))
                    sys.stdout.flush()
        except EnvkitError as exc:  # e.g. the engine went away: reported once, by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=pump, args=target, daemon=True) for target in targets]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        return
    if failures:
        raise failures[0]


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("run", shell_complete=run_ids)
@click.argument("service", shell_complete=run_services)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--replica", type=int, default=1)
def exec_(run: str, service: str, command: tuple[str, ...], replica: int) -> int:
    """Run COMMAND in SERVICE's container (no TTY); exits with its exit code."""
    result = _attach(run).exec(service, list(command), replica)
    sys.stdout.write(result.output)
    return int(result.exit_code)


@cli.command()
@click.argument("run", shell_complete=run_ids)
@click.option("--json", "as_json", is_flag=True)
@click.option("--env-file", type=click.Path(path_type=Path))
def outputs(run: str, as_json: bool, env_file: Path | None) -> None:
    """Print RUN's outputs (--json: the run document)."""
    env = _attach(run)
    if env_file:
        _write(env_file, to_dotenv(env.outputs))
    if as_json:
        out.print_json(dumps(env.document()))
    elif not env_file:
        sys.stdout.write(to_dotenv(env.outputs))


@cli.command(context_settings={"ignore_unknown_options": True})
@blueprint_arg
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--name", help="Run id (default: <blueprint>-<6 hex>).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--timeout", type=float, metavar="SECONDS")
@click.option("-v", "--verbose", is_flag=True)
@progress_options
def run(blueprint: Path, command: tuple[str, ...], name: str | None, only: tuple[str, ...],
        timeout: float | None, verbose: bool, progress_mode: str, quiet: bool) -> int:
    """Bring BLUEPRINT up, run COMMAND with the outputs in its environment, always tear down.

    COMMAND gets every output as an environment variable, plus ENVKIT_RUN (the run id) and
    ENVKIT_OUTPUTS_FILE (the run document as JSON). Exits with COMMAND's exit code.
    """
    from envkit import api

    with sigterm_as_interrupt():
        with progress(err, "quiet" if quiet else progress_mode, verbose) as view:
            env = api.up(blueprint, name=name, only=only, timeout=timeout, on_event=sink(view), backend=_engine())
        summary(err, env, view)
        try:
            with tempfile.TemporaryDirectory(prefix="envkit-") as tmp:
                doc = Path(tmp) / "outputs.json"
                doc.write_text(dumps(env.document()), encoding="utf-8")
                child_env = {**os.environ, **env.outputs, "ENVKIT_RUN": env.run_id, "ENVKIT_OUTPUTS_FILE": str(doc)}
                if not quiet:
                    err.print(f"[bold]run {env.run_id} is ready;[/] running: {escape(' '.join(command))}")
                group = reaper.own_group()  # reaper: a group of its own, unless in a terminal's foreground
                try:
                    proc = subprocess.Popen(list(command), env=child_env, process_group=0 if group else None)
                except OSError as exc:
                    raise EnvkitError(f"cannot run {command[0]!r}: {exc.strerror}") from exc
                try:  # from here on an interrupt is passed on to the command
                    reaper.child(proc.pid, group)  # reaper: ended with everything it started if envkit is killed
                    code = proc.wait()
                    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as shells do
                except KeyboardInterrupt as exc:
                    # In a terminal's foreground group, Ctrl-C has reached the command already; SIGTERM or
                    # SIGHUP, sent to envkit alone, is passed on. A command in a group of its own gets any.
                    if group:  # reaper
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
                    elif isinstance(exc, Terminated):
                        proc.send_signal(exc.signum)
                    try:
                        proc.wait(timeout=10)
                    except (subprocess.TimeoutExpired, KeyboardInterrupt):
                        if group:  # reaper: with everything it started
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(proc.pid, signal.SIGKILL)
                        proc.kill()
                    raise
                finally:
                    reaper.unchild(proc.pid)  # reaper
        finally:
            _teardown(env, quiet)


def _teardown(env: Environment, quiet: bool = False) -> None:
    """Remove the run, starting again on a second Ctrl-C; say "removed" only when it is."""
    left = f"run {env.run_id} may be left; remove it with: envkit down {env.run_id}"
    try:
        finished, _ = despite_interrupts(env.down)
    except EnvkitError:
        err.print(f"[yellow]{escape(left)}[/]")
        raise
    if not finished:
        err.print(f"[yellow]teardown interrupted: {escape(left)}[/]")
        raise KeyboardInterrupt  # the user stopped it: exit 130, whatever the command's code
    if not quiet:
        err.print(f"[dim]run {env.run_id} removed[/]")

from envkit.cli.export_cmd import export  # noqa: E402
from envkit.cli.seed_cmd import seed  # noqa: E402

cli.add_command(export)
from envkit.cli.graph_cmd import graph  # noqa: E402

cli.add_command(graph)
from envkit.cli.schema_cmd import schema  # noqa: E402

cli.add_command(schema)
from envkit.cli.import_cmd import import_  # noqa: E402

cli.add_command(import_)
from envkit.cli.init_cmd import init  # noqa: E402

cli.add_command(init)
from envkit.cli.complete import completion  # noqa: E402

cli.add_command(completion)

cli.add_command(seed)

from envkit.cli.examples import add_examples  # noqa: E402

add_examples(cli)  # keep last: every command registered above gets its --help example
