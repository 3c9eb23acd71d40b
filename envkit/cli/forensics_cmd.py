"""``envkit collect``: write a forensics bundle of a live run (docs/forensics.md)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["collect"]


@click.command()
@click.argument("run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--reason", default="", help="A line heading SUMMARY.txt (why the bundle was taken).")
def collect(run: str, directory: Path, reason: str) -> None:
    """Write a forensics bundle of RUN into DIRECTORY: logs, inspect data, probe results, SUMMARY.txt."""
    from rich.markup import escape

    from envkit.cli.commands import _attach, out

    path = _attach(run).collect(directory, reason=reason)
    out.print(f"wrote {escape(str(path / 'SUMMARY.txt'))}")
