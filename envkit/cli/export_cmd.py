"""``envkit export``: write a blueprint as an equivalent file for another tool (so far: Docker Compose)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from envkit.cli.envfiles import env_file_option, read_files

__all__ = ["export"]


@click.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["compose", "stack"]), default="compose", show_default=True,
              help="What to write: a Docker Compose file, or one for `docker stack deploy` (Swarm).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@env_file_option
def export(blueprint: Path, fmt: str, output: Path | None, env_files: tuple[Path, ...]) -> None:
    """Write BLUEPRINT as an equivalent Docker Compose file.

    Build services get envkit's content tag as their image (with pull_policy: never): run `envkit up`
    once so the images exist; Compose then reuses them and never builds. Readiness probes become
    healthchecks (1s interval); what Compose cannot express is listed as notes.
    """
    # Imported on use, like the other commands: every CLI start (`envkit validate`) pays for module imports.
    from rich.console import Console
    from rich.markup import escape

    from envkit.blueprint import load
    from envkit.export import image_tags, to_compose

    bp = load(blueprint, env_files=read_files(env_files))
    # Build contexts (under x-envkit) are written relative to where the compose file goes.
    result = to_compose(bp, image_tags(bp), base=output.resolve().parent if output is not None else None)
    if fmt == "stack":
        from envkit.export_stack import to_stack

        result = to_stack(result)
    text = result.text(str(bp.file))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    if result.secrets:  # the file refers to them as ${VAR}: Compose reads the values when it runs
        names = ", ".join(result.secrets)
        if output is None:
            err.print(f"[yellow]note:[/] secret values are not written: set {escape(names)} in the environment "
                      + ("(or pass `docker compose --env-file FILE`) when you run Compose" if fmt == "compose" else
                         "when you run `docker stack deploy`"))
        else:
            secrets_file = output.with_name(f"{output.stem}.secrets.env")
            _write_private(secrets_file, "".join(f"{k}={_env_value(v)}\n" for k, v in result.secrets.items()))
            run = (f"`docker compose --env-file {secrets_file} -f {output} up`" if fmt == "compose" else
                   f"`set -a; . {secrets_file}; set +a; docker stack deploy --resolve-image never -c {output} NAME`")
            err.print(f"[yellow]note:[/] secret values are not in {escape(str(output))} ({escape(names)}): wrote "
                      f"them to {escape(str(secrets_file))} (mode 0600); run {escape(run)}")
    if output is not None:
        err.print(f"wrote {escape(str(output))} ({fmt}, {len(bp.services)} services)")


def _write_private(path: Path, text: str) -> None:
    """A file only its owner may read (0600), also when it was there before."""
    from envkit.errors import UsageError

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def _env_value(value: str) -> str:
    """A value as Compose's env files read it back unchanged: single quotes take everything literally."""
    if re.fullmatch(r"[\w@%+=:,./-]*", value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    from envkit.outputs import to_dotenv

    return to_dotenv({"X": value})[2:-1]
