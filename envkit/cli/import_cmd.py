"""``envkit import``: a Docker Compose file as a blueprint, with notes on what does not carry over."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import click

from envkit.errors import BlueprintError, UsageError

__all__ = ["import_"]

#: the names Compose looks for in a folder, in its order
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
#: the override file Compose reads over it when it finds the project's file itself (no -f), in its order
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")


def compose_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for name in COMPOSE_FILES:
        if (path / name).is_file():
            return path / name
    raise UsageError(f"{path}: no {', '.join(COMPOSE_FILES)} in this folder")


def check(text: str, base: Path, env_files: list[Path] | None = None) -> list[str]:
    """The problems ``envkit validate`` would report for ``text`` written in ``base`` (none: it loads),
    reading ``env_files`` for ``${VAR}`` instead of the .env beside it when given."""
    from envkit.blueprint import load

    try:
        with tempfile.NamedTemporaryFile("w", dir=base, prefix=".envkit-import-", suffix=".yaml",
                                         encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            load(tmp.name, env_files=env_files)
    except BlueprintError as exc:
        return [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
    except OSError as exc:
        return [f"not checked ({base} is not writable: {exc.strerror})"]
    return []


@click.command(name="import")
@click.argument("compose", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the blueprint here (default: stdout); relative paths are written for its folder.")
@click.option("--name", help="The blueprint's name (default: the compose file's `name:`, else its folder's).")
@click.option("--profile", "profiles", multiple=True, metavar="NAME",
              help="Also import the services of this Compose profile (repeatable), as `docker compose --profile`.")
@click.option("--keep-host-ports", is_flag=True,
              help="Keep pinned host ports and addresses as written (default: ephemeral ports on 127.0.0.1).")
def import_(compose: Path, output: Path | None, name: str | None, profiles: tuple[str, ...],
            keep_host_ports: bool) -> None:
    """Write COMPOSE (a Compose file, or a folder holding compose.yaml) as an envkit blueprint.

    Carries over images and builds, environment and env files, ports, volumes, networks, depends_on
    conditions and healthchecks (as readiness probes); lists on stderr everything it could not. The
    result is validated: what still needs an edit is listed too.

    \b
    Example:
      envkit import compose.yaml > blueprint.yaml
      envkit import ./myapp --profile debug -o envkit/blueprint.yaml
    """
    from rich.console import Console
    from rich.markup import escape

    from envkit.blueprint import dotenv as env_files
    from envkit.blueprint.source import read_source
    from envkit.compose_extends import overridden
    from envkit.import_compose import from_compose

    file = compose_file(compose)
    source = read_source(file, compose=True)
    override = next((file.parent / n for n in OVERRIDE_FILES if (file.parent / n).is_file()), None) \
        if compose.is_dir() else None
    if override is not None:
        over = read_source(override, compose=True)  # what is wrong in it is named in it
        source = dataclasses.replace(source, data=overridden(source.data, over.data),
                                     marks=dataclasses.replace(source.marks, over=over.marks))
    base = (output.parent if output is not None else file.parent).resolve()
    variables = env_files.variables(os.environ, None, file.parent)  # as Compose reads ${VAR}: its .env, then this
    result = from_compose(source.data, source.marks, source.directory, base=base, name=name, profiles=profiles,
                          keep_host_ports=keep_host_ports, read=lambda p: p.read_text(encoding="utf-8"),
                          variables=variables)
    if compose.is_dir() and variables.get("COMPOSE_FILE"):
        result = dataclasses.replace(result, notes=(
            f"COMPOSE_FILE={variables['COMPOSE_FILE']} (the environment or {file.parent / '.env'}): `docker compose` "
            f"reads those files instead of {file.name}{' and ' + override.name if override else ''}: "
            "import the one it names", *result.notes))
    if override is not None:
        result = dataclasses.replace(result, notes=(
            f"{override}: merged over {file.name}, as `docker compose` does when it finds the files itself "
            f"(name {file.name} to import it alone)", *result.notes))
    dotenv = file.parent / ".env"
    moved = dotenv.is_file() and file.parent.resolve() != base
    if moved:
        # Compose reads the .env beside the compose file; envkit the one beside the blueprint.
        shown = output if output is not None else "BLUEPRINT"
        result = dataclasses.replace(result, notes=(*result.notes, (
            f"{dotenv}: Compose reads it for ${{VAR}}, but it is not beside the blueprint: bring it up with "
            f"`envkit up {shown} --env-file {dotenv}` (pytest: --envkit-env-file={dotenv}), or copy it there")))
    text = result.text(str(file))
    problems = check(text, base, [dotenv] if moved else None)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from exc
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    for problem in problems:
        err.print(f"[red]to fix:[/] {escape(problem)}")
    services = len(result.document["services"])
    where = f"wrote {escape(str(output))}: " if output is not None else ""
    verdict = "validates" if not problems else f"needs {len(problems)} edit(s) before it validates"
    if moved:
        verdict += f" (with --env-file {dotenv})"
    err.print(f"{where}blueprint '{result.document['name']}', {services} services; {verdict}")
