"""``envkit schema``: print the JSON Schema of the blueprint format (for editors: completion, hover, checks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from envkit.errors import UsageError

__all__ = ["schema"]


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
def schema(output: Path | None) -> None:
    """Print the JSON Schema (draft-07) of the blueprint format, derived from the loader's own key tables.

    Point your editor at it for completion and checks while typing; `envkit validate` still checks
    what a schema cannot (build contexts, references between services, cycles).

    \b
    Example:
      envkit schema -o .envkit/blueprint.schema.json
      # then, as the first line of blueprint.yaml:
      # yaml-language-server: $schema=.envkit/blueprint.schema.json
    """
    from envkit.blueprint.schema import schema as make

    text = json.dumps(make(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from exc
