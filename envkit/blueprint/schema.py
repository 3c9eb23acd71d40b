"""A JSON Schema of the blueprint format, derived from the tables in ``keys.py`` (for editors and linters).

It knows every key, the forms of its value, which keys a mapping requires (a key whose reference
default is "required") and the default of each simple one (editors complete them). Written in the
draft-07 vocabulary, which every editor's YAML support reads (yaml-language-server: "JSON Schema 7 and
below"); the tables' ``$defs`` are plain JSON pointers there. What a table cannot say — that a probe
has exactly one kind, that a service does not have both ``image`` and ``build`` — is in
``CONSTRAINTS``, by table. What only the loader can tell (that a build context exists, that a service
named in ``depends_on`` is defined, that a regex compiles) it leaves to ``envkit validate``.

``envkit schema`` (or ``python -m envkit.blueprint.schema``) prints it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from envkit.blueprint.keys import TABLES, TOP
from envkit.blueprint.readers import KeyDef, Table

__all__ = ["CONSTRAINTS", "DIALECT", "schema"]

DIALECT = "http://json-schema.org/draft-07/schema#"

_PROBE_KINDS = ("tcp", "http", "exec", "log", "healthcheck")

#: what the loader checks beyond each key's own form, by table: added to that table's object schema
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "probe": {"oneOf": [{"required": [k]} for k in _PROBE_KINDS]},
    "service": {"not": {"required": ["image", "build"]}},
}

_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _property(key: KeyDef) -> dict[str, Any]:
    plain = _LINK.sub(r"\1", key.doc).replace("`", "")
    out: dict[str, Any] = {**key.json, "description": plain, "markdownDescription": key.doc}
    if isinstance(key.default, bool | int | float | str) and key.default_doc.startswith("`"):
        out["default"] = key.default
    return out


def _object(table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": {k.name: _property(k) for k in table},
        "additionalProperties": False,
    }
    required = [k.name for k in table if k.default_doc == "required"]
    if required:
        out["required"] = required
    if table.extensions:
        out["patternProperties"] = {"^x-": {}}
    out.update(CONSTRAINTS.get(table.title, {}))
    return out


def schema() -> dict[str, Any]:
    """The schema: the top level, and each other table under ``$defs``."""
    return {
        "$schema": DIALECT,
        "title": "envkit blueprint (v1)",
        "description": "A topology of containers that envkit brings up, isolated, for each test run.",
        **_object(TOP),
        "$defs": {name: _object(table) for name, table in TABLES.items() if table is not TOP},
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(schema(), indent=2, ensure_ascii=False) + "\n")
