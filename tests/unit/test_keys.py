"""The tables of keys agree with everything derived from them: the model, the engine's ContainerSpec,
the Compose export and the reference in docs/blueprint.md."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envkit import export
from envkit.backends.base import ContainerSpec
from envkit.blueprint import Blueprint, Build, Mount, NetworkDef, Port, Service, VolumeDef
from envkit.blueprint import docs as reference
from envkit.blueprint import keys as K
from envkit.blueprint.readers import Table
from envkit.errors import BlueprintError


def _fields(cls: type, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """{field: default} of a model dataclass (``MISSING`` for a required one)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in without}


@pytest.mark.parametrize(("table", "model", "without"), [
    (K.SERVICE, Service, ("name",)),
    (K.NETWORK, NetworkDef, ("name",)),
    (K.VOLUME, VolumeDef, ("name",)),
    (K.BUILD, Build, ()),
    (K.PORT, Port, ("at",)),
    (K.MOUNT, Mount, ("at",)),
])
def test_each_key_is_a_model_field_with_the_same_default(table: Table, model: type, without: tuple[str, ...]) -> None:
    fields = _fields(model, without=without)
    assert set(fields) == {k.field for k in table}
    for key in table:
        if fields[key.field] is not dataclasses.MISSING:
            assert key.default == fields[key.field], key.name


def test_container_fields_are_container_spec_fields_passed_unchanged(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          api:
            image: busybox
            command: [sleep, "60"]
            entrypoint: /bin/sh -c
            environment: {A: "1"}
            user: "1000:1000"
            working_dir: /app
            tmpfs: ["/run:size=1m"]
            memory: 64m
            cpus: 0.5
            privileged: true
            cap_add: [NET_ADMIN]
            allow: [privileged, capabilities]
            stop_signal: SIGINT
        """)
    svc = bp.services["api"]
    fields = K.container_fields(svc)
    # These keys at least (a new pass-through key joins the table without editing this test).
    expected = {
        "command": ("sleep", "60"), "entrypoint": ("/bin/sh", "-c"), "environment": (("A", "1"),),
        "user": "1000:1000", "working_dir": "/app", "tmpfs": (("/run", "size=1m"),), "memory": 64 * 1024**2,
        "cpus": 0.5, "privileged": True, "cap_add": ("NET_ADMIN",), "stop_signal": "SIGINT",
    }
    assert {k: fields[k] for k in expected} == expected
    spec = ContainerSpec(name="n", image="i", labels=(), networks=(), **fields)
    assert {f: getattr(spec, f) for f in fields} == fields
    # Without the keys, the spec gets the engine's defaults: the model's defaults are the spec's.
    plain = K.container_fields(Service("x", image="busybox", build=None))
    assert ContainerSpec(name="n", image="i", labels=(), networks=(), **plain) == ContainerSpec(
        name="n", image="i", labels=(), networks=())


def test_every_service_key_reaches_compose_or_says_why_not() -> None:
    for key in K.SERVICE:
        assert not (key.compose and key.compose_fn), key.name
        if key.compose_fn is not None:
            assert key.compose_fn in export._MAPPERS, f"{key.name}: no export function registered as {key.compose_fn!r}"
    assert set(export._MAPPERS) == {k.compose_fn for k in K.SERVICE if k.compose_fn}
    # build: mapped with image (envkit's content tag); prestart: Compose starts without a gate; allow:
    # Compose needs no opt-in (what it allows is carried over as it is); snapshot: Compose has no snapshots;
    # stub: its routes reach Compose in the stub image's environment (the loader put them there).
    assert {k.name for k in K.SERVICE if not k.compose and not k.compose_fn} == {"build", "prestart", "allow",
                                                                               "snapshot", "stub"}


def test_only_table_keys_are_allowed(load_text: Callable[..., Blueprint]) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text("""
            services:
              a: {image: x, qqqqqqqq: 1}
            """)
    assert f"allowed: {', '.join(K.SERVICE.names)}" in str(err.value)


# -- the reference in docs/blueprint.md --------------------------------------------------------------------
def test_the_reference_in_the_docs_is_generated_from_the_tables() -> None:
    text = reference.DOC.read_text(encoding="utf-8")
    assert reference.update(text) == text, "docs/blueprint.md is stale: run python -m envkit.blueprint.docs --write"
    for section in reference.SECTIONS.values():
        assert reference.render(section) in text


def test_a_stale_reference_is_found_and_rewritten(tmp_path: Path) -> None:
    text = reference.DOC.read_text(encoding="utf-8")
    line = next(s for s in text.splitlines() if s.startswith("| [`memory`]"))
    page = tmp_path / "blueprint.md"
    page.write_text(text.replace(line + "\n", ""), encoding="utf-8")  # as if the key had been added to the table
    assert reference.main(["--check", "--file", str(page)]) == 1
    assert reference.main(["--write", "--file", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == text
    assert reference.main(["--check", "--file", str(page)]) == 0


def test_update_needs_every_section_and_knows_each_one() -> None:
    text = reference.DOC.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no generated section for port-keys"):
        reference.update(text.replace("<!-- generated: port-keys", "<!-- port-keys"))
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        reference.update(text + "<!-- generated: nope -->\n<!-- end generated -->\n")


@pytest.mark.parametrize("table", [K.PROBE, K.HTTP], ids=lambda t: t.title)
def test_keys_in_hand_written_tables_are_documented(table: Table) -> None:
    text = reference.DOC.read_text(encoding="utf-8")
    for key in table:  # as code: `tcp`, `http.path`, `{port, path, status, body}`
        assert re.search(rf"`[^`\n]*\b{key.name}\b[^`\n]*`", text), key.name
