"""The commands. Each one parses arguments, calls ``envkit.api`` and renders the result.

``envkit.api`` (and with it the engine client) is imported inside the commands that use it, so that
``envkit validate`` does not pay for it. The engine comes from the context object (``Session``): a backend
injected by the caller (``main(argv, backend=...)``; the unit tests pass the fake one), or the one
``envkit.backends.connect()`` gives for ``--engine`` / ``ENVKIT_ENGINE``, connected on first use.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from envkit import __version__
from envkit.cli.complete import blueprint_services, run_ids
from envkit.cli.envfiles import check_writable, env_file_option, read_files, write_env_options
from envkit.cli.envfiles import write_env as write_env_file
from envkit.cli.progress import MODES, progress, sink, summary
from envkit.cli.render import Renderer
from envkit.errors import EnvkitError, UsageError
from envkit.outputs import dumps, to_dotenv
from envkit.signals import sigterm_as_interrupt

if TYPE_CHECKING:
    from envkit.api import Environment
    from envkit.backends.base import Backend
    from envkit.environment import ServiceStatus
    from envkit.faults.records import FaultRecord


__all__ = ["Session", "cli"]

# Not a terminal (CI logs, pipes): wide enough that tables are never cut.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, width=None if sys.stderr.isatty() else 200)


@dataclass
class Session:
    """What every command of one CLI call shares: the engine (see the module's docstring)."""

    backend: Backend | None = None
    engine: str | None = None
    kubeconfig: str | None = None  # --kubeconfig: KUBECONFIG for the kubernetes engine (docs/kubernetes.md)

    def connect(self) -> Backend:
        if self.backend is None:
            from envkit.backends import connect
            from envkit.sweep import sweep_in_passing

            environment = {**os.environ, "KUBECONFIG": self.kubeconfig} if self.kubeconfig else None
            self.backend = connect(engine=self.engine, environment=environment)
            sweep_in_passing(self.backend)  # envkit.sweep: expired runs, at most once a minute, in the background
        return self.backend


def _engine() -> Backend:
    """The engine of the running command, connected on first use."""
    return click.get_current_context().ensure_object(Session).connect()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envkit")
@click.option("--engine", metavar="NAME", help="The container engine to use (default: $ENVKIT_ENGINE, else docker).")
@click.option("--kubeconfig", metavar="PATH", help="The kubeconfig of --engine kubernetes (default: $KUBECONFIG).")
@click.pass_context
def cli(ctx: click.Context, engine: str | None, kubeconfig: str | None) -> None:
    """A private, production-like container environment for every test run."""
    ctx.ensure_object(Session).engine = engine or None
    ctx.ensure_object(Session).kubeconfig = kubeconfig or None


blueprint_arg: Callable[[Callable[..., Any]], Callable[..., Any]] = click.argument("blueprint", type=click.Path(path_type=Path))


def progress_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("-q", "--quiet", is_flag=True, help="No progress: only errors (and the results on stdout).")(fn)
    return click.option("--progress", "progress_mode", type=click.Choice(MODES), default="auto", show_default=True,
                        help="live: one line per service, redrawn (auto on a terminal); plain: a line per event "
                             "(auto elsewhere, e.g. CI logs); quiet: as -q.")(fn)


def ttl_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--ttl", default=default, show_default=True, envvar="ENVKIT_TTL", metavar="DURATION",
                        help="After this (4h, 30m, 1d; 0: never) `envkit gc` may remove the run (env: ENVKIT_TTL).")


artifacts_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--artifacts", type=click.Path(file_okay=False, path_type=Path), envvar="ENVKIT_ARTIFACTS",
    help="Write a forensics bundle to DIR/<run>/ (always for up; for run, when the command fails). A failed "
         "up writes one anyway, into a temporary folder it names (env: ENVKIT_ARTIFACTS).")

snapshot_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--snapshot/--no-snapshot", default=None,
    help="Also snapshot every seeded service (seed steps, or scripts mounted at /docker-entrypoint-initdb.d) / "
         "use no snapshot at all (default: the blueprint's).")


def failure_folder() -> Path:
    """Where a failed up's bundle goes when no --artifacts is given: a folder of this user's in the temp dir."""
    return Path(tempfile.gettempdir()) / f"envkit-artifacts-{os.getuid()}"


@cli.command()
@blueprint_arg
@env_file_option
def validate(blueprint: Path, env_files: tuple[Path, ...]) -> None:
    """Check BLUEPRINT (a YAML file or a folder holding blueprint.yaml); lists every problem."""
    from envkit.blueprint import load

    bp = load(blueprint, env_files=read_files(env_files))
    for warning in bp.warnings:  # host access the blueprint opted into (docs/security.md)
        err.print(f"[yellow]warning:[/] {escape(str(warning))}")
    out.print(f"{escape(str(bp.file))}: ok — blueprint '{bp.name}', {len(bp.services)} services, "
              f"{len(bp.networks)} networks, {len(bp.outputs)} outputs")


@cli.command()
@blueprint_arg
@click.option("--name", help="Run id to plan for (default: a new one).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--offline", is_flag=True, help="Do not ask the engine which images exist.")
@env_file_option
@click.option("--snapshot/--no-snapshot", default=None,
              help="Plan as `up --snapshot` / `up --no-snapshot` would run (default: the blueprint's).")
def plan(blueprint: Path, name: str | None, only: tuple[str, ...], offline: bool, env_files: tuple[Path, ...],
         snapshot: bool | None) -> None:
    """Print what `up` would do, without doing it."""
    from envkit import api

    files = read_files(env_files)
    backend = None if offline else _engine()
    out.print(escape(api.plan(blueprint, name=name, only=only, backend=backend, env_files=files,
                              snapshot=snapshot).text()))


def _write(path: Path, text: str, append: bool = False) -> None:
    """Outputs may hold secrets: a file envkit creates is readable by its owner only (0600); one that exists
    is made so too, unless it is appended to ($GITHUB_OUTPUT belongs to the runner)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
        with open(fd, "a" if append else "w", encoding="utf-8") as fh:
            if not append:
                os.fchmod(fh.fileno(), 0o600)
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


def _shown(env: Environment) -> dict[str, str]:
    """The outputs as stdout gets them: real values for a pipe or a file, secret ones masked on a terminal."""
    return env.shown_outputs if sys.stdout.isatty() else dict(env.outputs)  # all: one dead service fails them


def _document(env: Environment) -> dict[str, object]:
    from envkit.outputs import run_document

    return run_document(env.info, _shown(env))


def _print_outputs(env: Environment, as_json: bool, write_to: Path | None, force: bool, github_output: bool) -> None:
    values = dict(env.outputs)
    if write_to:
        write_env_file(write_to, values, env.run_id, force)
    if github_output and os.environ.get("GITHUB_OUTPUT"):
        # The runner hides a value once told to (its own workflow command); then the value may be written.
        shown = env.shown_outputs
        for key in sorted(k for k in values if shown[k] != values[k]):
            for line in values[key].splitlines():
                if line.strip():
                    sys.stdout.write(f"::add-mask::{line}\n")
        _write(Path(os.environ["GITHUB_OUTPUT"]), _github_output({**values, "ENVKIT_RUN": env.run_id}), append=True)
    if as_json:
        out.print_json(dumps(_document(env)))
        return
    out.print(f"[bold green]run {env.run_id} is ready[/]")
    width = max((len(k) for k in values), default=0)
    for key, value in env.shown_outputs.items():
        out.print(f"  {key:<{width}}  {escape(value)}")
    out.print(f"[dim]remove it with: envkit down {env.run_id}[/]")


@cli.command()
@blueprint_arg
@click.option("--name", help="Run id (default: <blueprint>-<6 hex>).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Deadline for the whole environment to be ready.")
@click.option("--keep-on-failure", is_flag=True, help="Leave a failed run in place for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the run document (schema envkit.run/v1).")
@env_file_option
@write_env_options
@click.option("--github-output", is_flag=True, help="Append the outputs to $GITHUB_OUTPUT when it is set.")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and the build output.")
@progress_options
@click.option("--no-seed", is_flag=True, help="Skip the services' seed steps.")
@ttl_option("4h")
@artifacts_option
@snapshot_option
def up(blueprint: Path, name: str | None, only: tuple[str, ...], timeout: float | None, keep_on_failure: bool,
       as_json: bool, env_files: tuple[Path, ...], write_env: Path | None, force: bool, github_output: bool,
       verbose: bool, progress_mode: str, quiet: bool, no_seed: bool, ttl: str, artifacts: Path | None,
       snapshot: bool | None) -> None:
    """Bring BLUEPRINT up as a new isolated run and wait until every service is ready."""
    from envkit import api, gc

    files = read_files(env_files)
    if write_env is not None:
        check_writable(write_env, force)  # refused before anything is brought up
    with sigterm_as_interrupt(), progress(err, "quiet" if quiet else progress_mode, verbose) as view:
        env = api.up(blueprint, name=name, only=only, timeout=timeout, keep_on_failure=keep_on_failure,
                     on_event=sink(view), backend=_engine(), seed=not no_seed, env_files=files,
                     ttl=gc.parse_ttl(ttl), lifetime="detached", artifacts=artifacts or failure_folder(),
                     snapshot=snapshot)
        env.detach()  # the CLI hands the run over; `envkit down` removes it
    summary(err, env, view)
    if artifacts:
        _collect(env, artifacts, "")
    _print_outputs(env, as_json, write_env, force, github_output)


@cli.command()
@click.argument("runs", nargs=-1, shell_complete=run_ids)
@click.option("--all", "all_runs", is_flag=True, help="Every envkit run on this engine.")
@click.option("--strict", is_flag=True, help="Fail (exit 7) for a run that is not there.")
@click.option("--include-live", is_flag=True, help="With --all: also runs that may belong to running processes.")
@click.option("-v", "--verbose", is_flag=True)
def down(runs: tuple[str, ...], all_runs: bool, strict: bool, include_live: bool, verbose: bool) -> None:
    """Remove runs and everything they created. A run that is already gone is fine (exit 0), as with
    `docker compose down`; --strict makes it exit 7."""
    if not runs and not all_runs:
        raise UsageError("name the runs to remove (see `envkit ls`), or pass --all")
    from envkit import api

    backend = _engine()
    wanted = list(dict.fromkeys(runs))
    if wanted and not strict:
        present = {r.run_id for r in api.ls(backend=backend)}
        for gone in [r for r in wanted if r not in present]:
            err.print(f"no run {escape(gone)}: nothing to remove")
        wanted = [r for r in wanted if r in present]
        if not wanted and not all_runs:
            return
    counts = api.down(wanted, all_runs=all_runs, on_event=Renderer(err, verbose), backend=backend,
                      missing_ok=not strict, include_live=include_live)
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
    table = Table("RUN", "BLUEPRINT", "CREATED", "CONTAINERS", "RUNNING", "NETWORKS", "VOLUMES", "EXPIRES", box=None)
    for r in runs:
        table.add_row(r.run_id, r.blueprint, r.created_at, str(r.containers), str(r.running), str(r.networks),
                      str(r.volumes), r.expires_at or "never")
    out.print(table)


@cli.command()
@click.argument("run", shell_complete=run_ids)
@click.option("--json", "as_json", is_flag=True)
def status(run: str, as_json: bool) -> int:
    """Services of RUN: state, readiness and host ports. Exits 6 when a service is not ready (or a job
    has not completed), so that scripts can check a run with it."""
    env = _attach(run)
    rows = env.status()
    from envkit.faults.apply import history
    timeline = history(env.backend, run)  # by any process (docs/faults.md); read after status() put faults back
    if as_json:
        out.print_json(json.dumps([{**r.__dict__, "faults": _faults_of(r, timeline)} for r in rows]))
    else:
        table = Table("SERVICE", "CONTAINER", "KIND", "STATE", "READY", "PORTS", box=None)
        for r in rows:
            ports = ", ".join(f"{ip}:{port}->{key}" for key, (ip, port) in sorted(r.ports.items()))
            color = "green" if r.ok else "red"
            table.add_row(r.service, r.container, r.kind, r.state, f"[{color}]{escape(r.ready)}[/]", ports)
        out.print(table)
        for f in timeline:
            when = f"{f.at} → healed {f.healed_at}" if f.healed_at else f"since {f.at}"
            out.print(f"[{'dim' if f.healed_at else 'yellow'}]fault {f.id}[/] {when}: {escape(f.describe())} (seed {f.seed})")
    bad = [r for r in rows if not r.ok]
    for r in bad:
        err.print(f"[red]service {escape(r.service)}[/] ({escape(r.container)}): {escape(r.ready)}; "
                  f"see `envkit logs {escape(run)} {escape(r.service)}`")
    return 6 if bad else 0


def _faults_of(row: ServiceStatus, timeline: list[FaultRecord]) -> list[dict[str, object]]:
    """The faults of the timeline applied to the row's container (what the text form lists below the table),
    as JSON: active ones with ``healed_at`` null."""
    return [{"id": f.id, "kind": f.kind, "params": dict(f.params), "applied_at": f.at, "healed_at": f.healed_at or None,
             "seed": f.seed, "seeded": f.seeded, "generation": f.generation}
            for f in timeline if f.service == row.service and (row.container in f.targets or not f.targets)]




@cli.command()
@click.argument("run", shell_complete=run_ids)
@click.option("--json", "as_json", is_flag=True)
@write_env_options
@click.option("--env-file", "old_env_file", hidden=True, type=click.Path(path_type=Path))
def outputs(run: str, as_json: bool, write_env: Path | None, force: bool, old_env_file: Path | None) -> None:
    """Print RUN's outputs (--json: the run document); --write-env FILE writes them instead."""
    if old_env_file is not None:
        raise UsageError("--env-file reads variables (as in Compose); to write the outputs use --write-env FILE")
    env = _attach(run)
    if write_env:
        write_env_file(write_env, dict(env.outputs), env.run_id, force)
    if as_json:
        out.print_json(dumps(_document(env)))
    elif not write_env:
        sys.stdout.write(to_dotenv(_shown(env)))


def _collect(env: Environment, artifacts: Path, reason: str) -> None:
    try:
        err.print(f"forensics bundle: {escape(str(env.collect(artifacts / env.run_id, reason=reason)))}")
    except EnvkitError as exc:  # the bundle is extra: the command's own outcome stands
        err.print(f"[yellow]no forensics bundle: {escape(str(exc))}[/]")

# Commands that live in modules of their own: one import and one name each.
from envkit.cli.complete import completion  # noqa: E402
from envkit.cli.exec_cmd import exec_  # noqa: E402
from envkit.cli.export_cmd import export  # noqa: E402
from envkit.cli.fault_cmd import fault, heal  # noqa: E402
from envkit.cli.forensics_cmd import collect  # noqa: E402
from envkit.cli.gc_cmd import gc  # noqa: E402
from envkit.cli.graph_cmd import graph  # noqa: E402
from envkit.cli.images_cmd import images  # noqa: E402
from envkit.cli.import_cmd import import_  # noqa: E402
from envkit.cli.init_cmd import init  # noqa: E402
from envkit.cli.live import COMMANDS as LIVE_COMMANDS  # noqa: E402
from envkit.cli.render_cmd import render  # noqa: E402
from envkit.cli.run_cmd import run  # noqa: E402
from envkit.cli.schema_cmd import schema  # noqa: E402
from envkit.cli.seed_cmd import seed  # noqa: E402
from envkit.cli.snapshot_cmd import reset, snapshots  # noqa: E402
from envkit.cli.stub_cmd import stub  # noqa: E402

for _command in (run, export, seed, gc, collect, graph, schema, import_, init, completion, exec_, snapshots, reset, images,
                 fault, heal, stub, render, *LIVE_COMMANDS):  # LIVE_COMMANDS: restart, stop, start, rebuild, logs
    cli.add_command(_command)

from envkit.cli.examples import add_examples  # noqa: E402

add_examples(cli)  # keep last: every command registered above gets its --help example
