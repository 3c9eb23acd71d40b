"""A JSON Schema of the blueprint format, derived from the tables in ``keys.py`` (for editors and linters).

It knows every key and the forms of its value; what only the loader can tell (that a build context
exists, that a service named in ``depends_on`` is defined, that a regex compiles) it leaves to
``envkit validate``. ``python -m envkit.blueprint.schema`` prints it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from envkit.blueprint.keys import TABLES, TOP
from envkit.blueprint.readers import Table

__all__ = ["schema"]


def _object(table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": {k.name: {**k.json, "description": k.doc} for k in table},
        "additionalProperties": False,
    }
    if table.extensions:
        out["patternProperties"] = {"^x-": {}}
    return out


def schema() -> dict[str, Any]:
    """The schema (draft 2020-12): the top level, and each other table under ``$defs``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "envkit blueprint (v1)",
        **_object(TOP),
        "$defs": {name: _object(table) for name, table in TABLES.items() if table is not TOP},
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(schema(), indent=2, ensure_ascii=False) + "\n")
