"""``envkit run``: bring a blueprint up, run a command with the outputs in its environment, always tear
down, and exit with the command's code (its signals passed on; the watchdog ends it if envkit dies)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from envkit import control, reaper
from envkit.cli.complete import blueprint_services
from envkit.cli.envfiles import env_file_option, read_files
from envkit.cli.progress import progress, sink, summary
from envkit.errors import EnvkitError
from envkit.outputs import dumps
from envkit.signals import Terminated, despite_interrupts, sigterm_as_interrupt

if TYPE_CHECKING:
    from envkit.api import Environment


from envkit.cli.commands import (
    _collect,
    _engine,
    _write,
    artifacts_option,
    blueprint_arg,
    err,
    failure_folder,
    progress_options,
    snapshot_option,
    ttl_option,
)

__all__ = ["run"]


@click.command(context_settings={"ignore_unknown_options": True})
@blueprint_arg
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--name", help="Run id (default: <blueprint>-<6 hex>).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("--timeout", type=float, metavar="SECONDS")
@env_file_option
@click.option("-v", "--verbose", is_flag=True)
@progress_options
@ttl_option("0")
@artifacts_option
@click.option("--no-seed", is_flag=True, help="Skip the services' seed steps.")
@snapshot_option
@click.option("--control/--no-control", "serve", default=True, show_default=True,
              help=f"Give COMMAND {control.VARIABLE}: an HTTP address on 127.0.0.1 (with a secret token) to reset "
                   "services, heal faults and read the run document without starting envkit again "
                   "(docs/snapshots.md).")
def run(blueprint: Path, command: tuple[str, ...], name: str | None, only: tuple[str, ...],
        timeout: float | None, env_files: tuple[Path, ...], verbose: bool, progress_mode: str, quiet: bool,
        ttl: str, artifacts: Path | None, no_seed: bool, snapshot: bool | None, serve: bool) -> int:
    """Bring BLUEPRINT up, run COMMAND with the outputs in its environment, always tear down.

    COMMAND gets every output as an environment variable, plus ENVKIT_RUN (the run id),
    ENVKIT_OUTPUTS_FILE (the run document as JSON) and ENVKIT_CONTROL_URL (POST $ENVKIT_CONTROL_URL/reset
    resets the services with a snapshot). Exits with COMMAND's exit code.
    """
    from envkit import api, gc

    files = read_files(env_files)
    with sigterm_as_interrupt():
        with progress(err, "quiet" if quiet else progress_mode, verbose) as view:
            env = api.up(blueprint, name=name, only=only, timeout=timeout, on_event=sink(view), backend=_engine(),
                         env_files=files, ttl=gc.parse_ttl(ttl), artifacts=artifacts or failure_folder(),
                         seed=not no_seed, snapshot=snapshot)
        summary(err, env, view)
        try:
            with tempfile.TemporaryDirectory(prefix="envkit-") as tmp, contextlib.ExitStack() as stack:
                doc = Path(tmp) / "outputs.json"
                _write(doc, dumps(env.document()))  # 0600: it may hold secrets
                outer = {k: v for k, v in os.environ.items() if k != control.VARIABLE}  # an outer run's: not ours
                child_env = {**outer, **env.outputs, "ENVKIT_RUN": env.run_id, "ENVKIT_OUTPUTS_FILE": str(doc)}
                served = stack.enter_context(control.serving(_controls(env))) if serve else None
                if served is not None:  # envkit.control: resets without a process per reset; a secret
                    child_env[control.VARIABLE] = served
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
                    stack.close()  # the endpoint stops with the command: no reset under the forensics' feet
                    if code and artifacts:  # forensics: the services as the failing command left them
                        _collect(env, artifacts, f"{command[0]} exited with {code}")
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


def _controls(env: Environment) -> control.Controls:
    return control.Controls(reset=lambda names: env.reset(*names), heal=env.heal, document=env.document)


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
