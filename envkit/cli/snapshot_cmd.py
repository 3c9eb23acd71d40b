"""``envkit snapshots ls|rm|prune`` and ``envkit reset RUN [SVC…]`` (docs/snapshots.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from envkit.blueprint.readers import parse_duration
from envkit.cli.envfiles import env_file_option, read_files
from envkit.errors import UsageError

if TYPE_CHECKING:
    from envkit.backends import Backend
    from envkit.blueprint import Blueprint

__all__ = ["reset", "run_blueprint", "snapshots"]


def run_blueprint(backend: Backend, run: str, env_files: tuple[Path, ...]) -> Blueprint | None:
    """With ``--env-file``: the run's blueprint, read from the path on its labels with those files; None
    without (what needs it loads it then, with the current environment and the .env beside it)."""
    if not env_files:
        return None
    from envkit.blueprint import load
    from envkit.runs import describe

    files = read_files(env_files)
    info = describe(backend, run)
    if not info.blueprint_path or not Path(info.blueprint_path).exists():
        raise UsageError(f"run {run}: its blueprint {info.blueprint_path or '(unknown)'} is not there any more")
    return load(info.blueprint_path, env_files=files)


def _backend() -> Backend:
    from envkit.cli.commands import Session

    return click.get_current_context().ensure_object(Session).connect()


@click.group()
def snapshots() -> None:
    """The snapshots on this engine: seeded states that `up` starts services from."""


@snapshots.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per snapshot, in a list.")
def ls_(as_json: bool) -> None:
    """List the snapshots: key, service, blueprint, reset path, volumes, creation time."""
    from envkit import snapshots as S
    from envkit.cli.commands import out

    found = S.list_snapshots(_backend())
    if as_json:
        out.print_json(json.dumps([{"key": s.key, "service": s.service, "blueprint": s.blueprint, "image": s.image,
                                    "reset": s.reset.split(":", 1)[0], "volumes": [t for t, _ in s.mounts],
                                    "created_at": s.created_at} for s in found]))
        return
    if not found:
        out.print("no snapshots")
        return
    from rich.table import Table

    table = Table(box=None)
    for col in ("KEY", "SERVICE", "BLUEPRINT", "RESET", "VOLUMES", "CREATED"):
        table.add_column(col)
    for s in found:
        table.add_row(s.key[:16], s.service, s.blueprint, s.reset.split(":", 1)[0],
                      ", ".join(t for t, _ in s.mounts) or "-", s.created_at)
    out.print(table)


@snapshots.command("rm")
@click.argument("keys", nargs=-1, required=True)
def rm(keys: tuple[str, ...]) -> None:
    """Remove snapshots by key (the 16 hex `ls` shows are enough)."""
    from envkit import snapshots as S
    from envkit.cli.commands import out

    backend = _backend()
    for key in keys:
        if len(key) < 8 or any(c not in "0123456789abcdef" for c in key):
            raise UsageError(f"'{key}' is not a snapshot key (at least 8 hex digits; see `envkit snapshots ls`)")
        removed = S.remove(backend, key)
        if not removed:
            raise UsageError(f"no snapshot {key} on this engine (see `envkit snapshots ls`)")
        out.print(f"removed snapshot {key}: {len(removed)} pieces")


@snapshots.command()
@click.option("--older-than", metavar="DURATION", help="Only snapshots created longer ago (e.g. 12h, 7d = 168h).")
def prune(older_than: str | None) -> None:
    """Remove snapshots (and the pieces of captures that never finished). Runs are left alone."""
    from envkit import snapshots as S
    from envkit.cli.commands import out

    age = None
    if older_than is not None:
        text = older_than.strip()
        age = float(text[:-1]) * 86400 if text.endswith("d") and text[:-1].isdigit() else parse_duration(text)
        if age is None:
            raise UsageError(f"--older-than: expected a duration such as 30m, 12h or 7d, got '{older_than}'")
    removed = S.prune(_backend(), age)
    out.print(f"removed {len(removed)} snapshot pieces" + ("" if removed else " (nothing to prune)"))


@click.command()
@click.argument("run")
@click.argument("services", nargs=-1)
@click.option("--restore", is_flag=True, help="Restart from the snapshot even where the fast path applies.")
@env_file_option
@click.option("-v", "--verbose", is_flag=True, help="Show every step.")
def reset(run: str, services: tuple[str, ...], restore: bool, env_files: tuple[Path, ...], verbose: bool) -> None:
    """Put RUN's services (those started with a snapshot, or the SERVICES named) back to their seeded state.

    Where the run's blueprint is needed (the restore path; the seed steps of dependants that a reset runs
    again), it is read from the path on the run's labels, with the current environment for ${VAR}: give
    the --env-file files `up` was given."""
    from envkit.cli.commands import err
    from envkit.cli.render import Renderer
    from envkit.reset import reset as reset_run

    backend = _backend()
    taken = reset_run(backend, run, services, blueprint=run_blueprint(backend, run, env_files),
                      on_event=Renderer(err, verbose), path="restore" if restore else None, keep_session=False)
    err.print("[bold green]" + ", ".join(f"{s} reset in {t:.2f}s" for s, t in taken.items()) + "[/]")
