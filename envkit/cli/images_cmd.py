"""``envkit images ls|prune``: envkit's own built images (content-hashed tags, see ``envkit.prune``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from envkit.cli.commands import Session, out

if TYPE_CHECKING:
    from envkit.backends.base import Backend

__all__ = ["images"]


def _engine() -> Backend:
    return click.get_current_context().ensure_object(Session).connect()


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _repositories(blueprints: tuple[Path, ...]) -> set[str] | None:
    if not blueprints:
        return None
    from envkit.blueprint import load
    from envkit.prune import repositories_of

    return set().union(*(repositories_of(load(b)) for b in blueprints))


blueprints_arg = click.argument("blueprints", nargs=-1, type=click.Path(path_type=Path), metavar="[BLUEPRINT]...")


@click.group()
def images() -> None:
    """envkit's own built images: list them, remove those nothing needs."""


@images.command(name="ls")
@blueprints_arg
def ls_(blueprints: tuple[Path, ...]) -> None:
    """List envkit's built images (of the BLUEPRINTs' build contexts only, when named).

    \b
    Example:
      envkit images ls blueprints/shop
    """
    from envkit.prune import built_images

    table = Table("IMAGE", "CREATED", "SIZE", "IN USE", "NEWEST", box=None)
    for i in built_images(_engine(), _repositories(blueprints)):
        table.add_row(escape(i.tag), i.created.strftime("%Y-%m-%d %H:%M:%S"), _size(i.size),
                      "yes" if i.in_use else "", "yes" if i.newest else "")
    out.print(table)


@images.command()
@blueprints_arg
@click.option("--all", "all_tags", is_flag=True, help="Remove the newest tag of each build context too.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def prune(blueprints: tuple[Path, ...], all_tags: bool, dry_run: bool) -> None:
    """Remove envkit's built images that nothing uses (of the BLUEPRINTs' build contexts only, when named).

    Keeps the newest tag of each build context (unless --all) and every image a container uses, in
    any state; never touches images envkit did not build.

    \b
    Example:
      envkit images prune --dry-run
      envkit images prune blueprints/shop --all
    """
    from envkit.prune import prune as prune_images

    result = prune_images(_engine(), all_tags=all_tags, dry_run=dry_run, repositories=_repositories(blueprints))
    verb = "would remove" if dry_run else "removed"
    for i in result.removed:
        out.print(f"{verb} {escape(i.tag)}")
    for i, why in result.failed:
        out.print(f"[red]could not remove {escape(i.tag)}: {escape(why)}[/]")
    in_use = sum(i.in_use for i in result.kept)
    out.print(f"{verb} {len(result.removed)} images ({_size(result.freed)} at most); kept {len(result.kept)} "
              f"({in_use} in use)")
