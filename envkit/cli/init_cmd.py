"""``envkit init``: a starter blueprint from a short menu, written into a folder (never over your files)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from envkit.errors import UsageError

__all__ = ["init"]


def interactive() -> bool:
    return sys.stdin.isatty()


def _ask() -> list[str]:
    from envkit.starter import CHOICES

    keys = list(CHOICES)
    click.echo("What should the environment hold?", err=True)
    for i, key in enumerate(keys, 1):
        click.echo(f"  {i}. {key:<9} {CHOICES[key].title}", err=True)
    answer = click.prompt("Numbers or names, comma-separated", default="1,3,6", err=True)
    picked = []
    for word in re.split(r"[,\s]+", answer.strip()):
        if word.isdigit() and 1 <= int(word) <= len(keys):
            picked.append(keys[int(word) - 1])
        elif word:
            picked.append(word)
    return picked


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--with", "with_", metavar="LIST",
              help="Comma-separated: postgres, mysql, redis, rabbitmq, stub, app (default: ask, on a terminal).")
@click.option("--name", help="The blueprint's name (default: the folder's name).")
@click.option("--app", "app_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The folder of your app's Dockerfile (default: DIRECTORY itself when it holds one).")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: Path, with_: str | None, name: str | None, app_dir: Path | None, force: bool) -> None:
    """Write a starter blueprint into DIRECTORY: blueprint.yaml and a small build context per service
    (FROM debian:bookworm-slim with Debian's package: no registry needed). It validates and runs as
    written; the app builds from your Dockerfile, or from a placeholder that answers GET /health.

    \b
    Example:
      envkit init --with postgres,redis,app
      envkit init myenv            # asks which services, on a terminal
    """
    from envkit.blueprint.readers import NAME
    from envkit.blueprint.schema import schema
    from envkit.starter import CHOICES, starter

    if with_ is None:
        if not interactive():
            raise UsageError(f"name the services with --with (from: {', '.join(CHOICES)})")
        keys = _ask()
    else:
        keys = [k.strip().lower() for k in with_.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CHOICES]
    if unknown or not keys:
        raise UsageError(f"--with: unknown {', '.join(unknown) or 'nothing chosen'} (choose from: {', '.join(CHOICES)})")
    directory = directory.resolve()
    name = name or re.sub(r"[^a-z0-9_-]+", "-", directory.name.lower()).strip("-_")[:40] or "env"
    if not NAME.match(name):
        raise UsageError(f"--name: invalid name '{name}': use up to 40 lowercase letters, digits, '-' and '_'")
    app_context = None
    if "app" in keys:
        app = (app_dir or directory).resolve()
        if (app / "Dockerfile").is_file():
            rel = os.path.relpath(app, directory)
            app_context = rel if rel.startswith(".") else f"./{rel}"
        elif app_dir is not None:
            raise UsageError(f"--app: no Dockerfile in {app_dir}")
    files = starter(name, keys, app_context)
    files[".envkit/blueprint.schema.json"] = json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
    taken = [p for p in files if (directory / p).exists() and p != ".envkit/blueprint.schema.json"]
    if taken and not force:
        raise UsageError(f"{directory}: would overwrite {', '.join(taken)} (pass --force to overwrite)")
    for rel, text in files.items():
        path = directory / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    click.echo(f"wrote {directory / 'blueprint.yaml'} ({', '.join(dict.fromkeys(keys))}) and "
               f"{len(files) - 1} more files", err=True)
    click.echo(f"next: envkit up {directory}", err=True)
