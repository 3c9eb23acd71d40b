"""``envkit graph``: draw a blueprint's topology (Mermaid or DOT text; SVG/PNG through Graphviz's ``dot``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from envkit.cli.complete import blueprint_services
from envkit.errors import EngineError, UsageError

__all__ = ["graph"]

FORMATS = ("mermaid", "dot", "svg", "png")


def render_with_dot(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG bytes from DOT text, by Graphviz's ``dot`` (a UsageError naming the package when absent)."""
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError(f"--format {fmt} needs Graphviz's `dot` (Debian/Ubuntu: apt-get install graphviz; "
                         "macOS: brew install graphviz); --format dot or mermaid write text without it")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"graphviz: cannot run {exe}: {exc}") from exc
    if done.returncode != 0:
        raise EngineError(f"graphviz: dot -T{fmt} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


@click.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid", show_default=True,
              help="Mermaid or DOT text, or a picture drawn by Graphviz (svg, png).")
@click.option("--only", multiple=True, metavar="SVC", shell_complete=blueprint_services,
              help="Only these services and what they depend on.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
def graph(blueprint: Path, fmt: str, only: tuple[str, ...], output: Path | None) -> None:
    """Draw BLUEPRINT's topology: services (by kind), networks, volumes, dependencies with their
    conditions, published ports.

    \b
    Example:
      envkit graph blueprints/shop                      # Mermaid, for a ```mermaid block
      envkit graph blueprints/shop --format svg -o shop.svg
    """
    from envkit.blueprint import load
    from envkit.graph import to_dot, to_mermaid, topology

    bp = load(blueprint)
    unknown = [s for s in only if s not in bp.services]
    if unknown:
        raise UsageError(f"--only: unknown service {', '.join(unknown)} (services: {', '.join(sorted(bp.services))})")
    t = topology(bp, only)
    if fmt == "mermaid":
        data = to_mermaid(t).encode()
    elif fmt == "dot":
        data = to_dot(t).encode()
    else:
        if output is None and fmt == "png" and sys.stdout.isatty():
            raise UsageError("--format png: name a file with -o (or redirect stdout)")
        data = render_with_dot(to_dot(t), fmt)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from exc
