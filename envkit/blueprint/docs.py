"""The key reference in docs/blueprint.md, generated from the tables in ``keys.py``.

Each table is rendered between two markers in the page; the prose and examples around them are written
by hand. ``python -m envkit.blueprint.docs --write`` regenerates them, ``--check`` fails when they are
stale (a unit test runs the same comparison)::

    <!-- generated: service-keys (python -m envkit.blueprint.docs --write) -->
    | Key | Type / forms | Default | Meaning |
    …
    <!-- end generated -->
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envkit.blueprint import keys as K
from envkit.blueprint.readers import KeyDef, Table

__all__ = ["DOC", "SECTIONS", "main", "render", "update"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "blueprint.md"
_COMMAND = "python -m envkit.blueprint.docs --write"
_SECTION = re.compile(r"(?P<head><!-- generated: (?P<name>[\w-]+)[^>]*-->\n)(?P<body>.*?)(?P<tail><!-- end generated -->)",
                      re.S)


@dataclass(frozen=True)
class Section:
    table: Table
    type_header: str = "Type"
    extension_row: bool = False  # a last row for ``x-…`` keys


SECTIONS: dict[str, Section] = {
    "top-keys": Section(K.TOP, extension_row=True),
    "network-keys": Section(K.NETWORK),
    "volume-keys": Section(K.VOLUME),
    "service-keys": Section(K.SERVICE, "Type / forms"),
    "build-keys": Section(K.BUILD),
    "port-keys": Section(K.PORT),
    "mount-keys": Section(K.MOUNT),
    "seed-keys": Section(K.SEED, "Type / forms"),
    "seed-sql-keys": Section(K.SEED_SQL),
    "seed-copy-keys": Section(K.SEED_COPY),
    "seed-exec-keys": Section(K.SEED_EXEC),
    "seed-http-keys": Section(K.SEED_HTTP),
    "seed-run-keys": Section(K.SEED_RUN),
    "stub-keys": Section(K.STUB),
    "stub-route-keys": Section(K.STUB_ROUTE),
    "stub-match-keys": Section(K.STUB_MATCH),
    "stub-response-keys": Section(K.STUB_RESPONSE),
    "stub-tls-keys": Section(K.STUB_TLS),
    "placement-keys": Section(K.PLACEMENT),
}


def _cell(key: KeyDef) -> str:
    return f"[`{key.name}`](#{key.section})" if key.section else f"`{key.name}`"


def render(section: Section) -> str:
    """The Markdown table of one section (without its markers)."""
    lines = [f"| Key | {section.type_header} | Default | Meaning |", "|---|---|---|---|"]
    lines += [f"| {_cell(k)} | {k.type} | {k.default_doc} | {k.doc} |" for k in section.table]
    if section.extension_row:
        lines.append("| `x-…` | anything | — | Extension keys. envkit ignores them. Use them for YAML anchors. |")
    return "\n".join(lines) + "\n"


def update(text: str) -> str:
    """``text`` with every generated section rendered afresh; every section must have its markers."""
    found: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in SECTIONS:
            raise ValueError(f"unknown generated section '{name}' (known: {', '.join(SECTIONS)})")
        found.add(name)
        return f"<!-- generated: {name} ({_COMMAND}) -->\n{render(SECTIONS[name])}{match.group('tail')}"

    out = _SECTION.sub(fill, text)
    missing = [name for name in SECTIONS if name not in found]
    if missing:
        raise ValueError(f"no generated section for {', '.join(missing)}: add '<!-- generated: NAME -->' "
                         "… '<!-- end generated -->' where it belongs")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envkit.blueprint.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DOC, help="the page (default: docs/blueprint.md)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="regenerate the sections in place")
    what.add_argument("--check", action="store_true", help="exit 1 when the sections are stale")
    args = parser.parse_args(argv)
    text = args.file.read_text(encoding="utf-8")
    fresh = update(text)
    if args.check:
        if fresh != text:
            sys.stderr.write(f"{args.file}: the key reference is stale; run {_COMMAND}\n")
            return 1
        return 0
    if fresh != text:
        args.file.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
