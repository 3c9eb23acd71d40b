"""The JSON Schema derived from the tables: a valid draft-07 schema that every blueprint envkit ships or tests
with validates against, and that refuses what editors should flag (unknown keys, bad forms) at every level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from envkit.blueprint.schema import schema
from envkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: every blueprint that loads: bundled, in examples/, and the test suite's good ones
GOOD = sorted({*ROOT.glob("blueprints/*/blueprint.yaml"), *ROOT.glob("examples/**/blueprint.yaml"),
               *ROOT.glob("tests/blueprints/good/*/blueprint.yaml")})
SCHEMA = schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The failures under an anyOf/oneOf, in the branch that fits best (the object form of a mapping,
    not the ``null`` beside it), all of them."""
    if not error.context:
        return [error]
    depth: dict[Any, int] = {}
    for e in error.context:  # the branch that got furthest into the value: the one whose shape fits
        branch = e.relative_schema_path[0]
        depth[branch] = max(depth.get(branch, -1), len(e.absolute_path) + (e.validator != "type"))
    branch = max(depth, key=lambda b: depth[b])
    return [leaf for e in error.context if e.relative_schema_path[0] == branch for leaf in _leaves(e)]


def problems(document: Any) -> list[str]:
    """Each failure at its deepest point, as ``path: message``."""
    return sorted(f"{e.json_path}: {e.message}" for error in VALIDATOR.iter_errors(document) for e in _leaves(error))


def test_the_schema_is_a_valid_draft7_schema_whose_references_all_resolve() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    text = json.dumps(SCHEMA)
    for name in SCHEMA["$defs"]:
        assert f'"#/$defs/{name}"' in text, f"table {name} is not reachable"
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}:
        assert ref in SCHEMA["$defs"]


def test_there_are_blueprints_to_check() -> None:
    assert len(GOOD) >= 8 and any("shop" in str(p) for p in GOOD)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: str(p.relative_to(ROOT).parent))
def test_every_good_blueprint_validates(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_envkit_schema_prints_the_same_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA
    assert main(["schema", "-o", str(tmp_path / "sub" / "s.json")]) == 0
    assert json.loads((tmp_path / "sub" / "s.json").read_text()) == SCHEMA


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    bp = {"name": "x", "nme": 1, "x-any": {"whatever": 1}, "networks": {"n": {"internl": True}},
          "services": {"a": {"image": "i", "comand": "x", "ports": [{"container": 1, "hots": 2}],
                             "volumes": [{"target": "/x", "source": "v", "ro": True}],
                             "ready": {"http": {"port": 1, "pth": "/"}, "timout": 1}},
                       "b": {"build": {"context": ".", "dockerfle": "D"}}}}
    found = problems(bp)
    for where, key in [("$", "nme"), ("$.networks.n", "internl"), ("$.services.a", "comand"),
                       ("$.services.a.ports[0]", "hots"), ("$.services.b.build", "dockerfle"),
                       ("$.services.a.volumes[0]", "ro"), ("$.services.a.ready.http", "pth"),
                       ("$.services.a.ready", "timout")]:
        assert any(p.startswith(f"{where}: ") and f"'{key}'" in p for p in found), (where, key, found)
    assert len(found) == 8, found


@pytest.mark.parametrize(("service", "why"), [
    ({"image": "i", "ports": ["abc"]}, "ports"),
    ({"image": "i", "ports": [70000]}, "ports"),
    ({"image": "i", "ports": ["127.0.0.1::8080/sctp"]}, "ports"),
    ({"image": "i", "kind": "daemon"}, "kind"),
    ({"image": "i", "depends_on": {"db": "healthy"}}, "depends_on"),
    ({"image": "i", "depends_on": {"db": {"condition": "ready", "restart": True}}}, "depends_on"),
    ({"image": "i", "stop_grace_period": "10 seconds"}, "stop_grace_period"),
    ({"image": "i", "ready": {"tcp": 80, "http": 80}}, "ready"),
    ({"image": "i", "ready": {"timeout": "5s"}}, "ready"),
    ({"image": "i", "build": "."}, "image and build"),
    ({"image": "i", "environment": ["NO_EQUALS_SIGN"]}, "environment"),
    ({"build": {"dockerfile": "D"}}, "build without a context"),
    ({"image": "i", "volumes": [{"target": "/x"}]}, "a mount without a source"),
])
def test_the_schema_refuses_bad_forms(service: dict[str, Any], why: str) -> None:
    assert problems({"services": {"a": service}}) != [], why


@pytest.mark.parametrize("bad", [
    {"services": {}},
    {"services": {"Bad_Name": {"image": "i"}}},
    {"name": "Shop", "services": {"a": {"image": "i"}}},
    {"networks": {"Edge!": {}}, "services": {"a": {"image": "i"}}},
    {"outputs": {"api-url": "x"}, "services": {"a": {"image": "i"}}},
    {"name": "x"},
])
def test_the_schema_refuses_bad_names_and_a_missing_services(bad: dict[str, Any]) -> None:
    assert problems(bad) != []


def test_interpolated_values_are_accepted_where_numbers_go() -> None:
    assert problems({"name": "${NAME}", "services": {"a": {
        "image": "i", "ports": ["${PORT}", "127.0.0.1:${HOST_PORT}:80"], "stop_grace_period": "${GRACE:-1s}",
        "ready": {"tcp": "${PORT}", "timeout": "${T}"}}}}) == []


def test_keys_carry_their_reference_line_and_simple_defaults_for_completion() -> None:
    kind = SCHEMA["$defs"]["service"]["properties"]["kind"]
    assert kind["default"] == "service" and kind["description"]
    assert SCHEMA["$defs"]["port"]["properties"]["host_ip"]["default"] == "127.0.0.1"
    assert SCHEMA["required"] == ["services"]
