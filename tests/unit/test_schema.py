"""The JSON Schema derived from the tables knows every key of the bundled blueprints (and no others)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from envkit.blueprint.schema import schema

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(ROOT.glob("blueprints/*/blueprint.yaml"))
SCHEMA = schema()
_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
                                       "integer": (int,), "number": (int, float), "null": (type(None),)}


def problems(value: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """A small validator for the keywords the derived schema uses (no jsonschema package here)."""
    if "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")]
    if "anyOf" in node:
        found = [problems(value, branch, path) for branch in node["anyOf"]]
        if any(not f for f in found):
            return []
        # Report the branch whose shape fits (its problems are deeper down), not a "not null" beside it.
        deeper = [f for f in found if not all(p.startswith(f"{path}: ") for p in f)]
        return min(deeper or found, key=len)
    if "const" in node and value != node["const"]:
        return [f"{path}: not {node['const']!r}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{path}: not one of {node['enum']}"]
    if "type" in node:
        kinds = [node["type"]] if isinstance(node["type"], str) else node["type"]
        if not any(isinstance(value, _TYPES[k]) and not (isinstance(value, bool) and k in ("integer", "number"))
                   for k in kinds):
            return [f"{path}: not {' or '.join(kinds)}"]
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in node.get("properties", {}):
                out += problems(item, node["properties"][key], f"{path}.{key}")
            elif any(key.startswith(p.strip("^")) for p in node.get("patternProperties", {})):
                continue
            elif node.get("additionalProperties") is False:
                out.append(f"{path}.{key}: unknown key")
            elif isinstance(node.get("additionalProperties"), dict):
                out += problems(item, node["additionalProperties"], f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            out += problems(item, node["items"], f"{path}[{i}]")
    return out


def test_the_schema_is_json_and_every_reference_resolves() -> None:
    text = json.dumps(SCHEMA)
    for name in SCHEMA["$defs"]:
        assert f'"#/$defs/{name}"' in text, f"table {name} is not reachable"
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}:
        assert ref in SCHEMA["$defs"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.parent.name)
def test_bundled_blueprints_have_only_keys_the_schema_knows(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8")), SCHEMA) == []


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    bp = {"name": "x", "nme": 1, "x-any": {"whatever": 1}, "networks": {"n": {"internl": True}},
          "services": {"a": {"image": "i", "comand": "x", "ports": [{"container": 1, "hots": 2}],
                             "build": {"context": ".", "dockerfle": "D"},
                             "volumes": [{"target": "/x", "source": "v", "ro": True}],
                             "ready": {"http": {"port": 1, "pth": "/"}, "timout": 1}}}}
    assert sorted(problems(bp, SCHEMA)) == sorted([
        ".nme: unknown key", ".networks.n.internl: unknown key", ".services.a.comand: unknown key",
        ".services.a.ports[0].hots: unknown key", ".services.a.build.dockerfle: unknown key",
        ".services.a.volumes[0].ro: unknown key", ".services.a.ready.http.pth: unknown key",
        ".services.a.ready.timout: unknown key",
    ])
