"""Property: whatever the file holds, loading ends in a Blueprint or in a BlueprintError whose every problem
names the file, a line and a key path (never another exception), and a Blueprint plans. The inputs are random
YAML-ish documents and mutations of the bundled and test blueprints: values swapped for odd ones, types
changed, keys renamed or dropped, items duplicated."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envkit import api
from envkit.blueprint import Blueprint, load
from envkit.errors import BlueprintError

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted([*ROOT.glob("blueprints/*/blueprint.yaml"), *ROOT.glob("tests/blueprints/good/*/blueprint.yaml")])
# Modest and repeatable in the suite; ENVKIT_FUZZ_EXAMPLES=5000 for a longer, random campaign.
_EXAMPLES = int(os.environ.get("ENVKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_EXAMPLES or 150, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                database=None, derandomize=not _EXAMPLES)

ODD_TEXT = st.sampled_from([
    "", " ", "db\n", "-", "0", "00", "1e300", "1e999", ".inf", "-.inf", ".nan", "²", "٣", "1" + "0" * 400,
    "1" + "0" * 400 + "m", "0.0.0.0::80", "[::]:1:2", "999.1.1.1:80:80", "/", "/etc", "~/.ssh", "../..",
    "/var/run/docker.sock:/s", "a:b:c:d", "${X}", "${X:?}", "${services.db.host}", "${services.x.ports.1}",
    "${secret:X}", "$$", "\x00", "\t", "é", "ALL", "true", "null", "[", "{", "*a", "&a", "!!python/object",
])
ODD = st.one_of(
    ODD_TEXT, st.text(max_size=30), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.lists(ODD_TEXT, max_size=3), st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3),
)
KEYS = st.sampled_from([
    "image", "build", "kind", "command", "entrypoint", "environment", "user", "working_dir", "networks", "ports",
    "volumes", "tmpfs", "labels", "memory", "cpus", "replicas", "depends_on", "ready", "stop_grace_period",
    "stop_signal", "privileged", "cap_add", "hostname", "prestart", "allow", "context", "dockerfile", "args",
    "target", "container", "host", "host_ip", "protocol", "type", "source", "read_only", "tcp", "http", "exec",
    "log", "healthcheck", "timeout", "port", "path", "status", "body", "value", "secret", "secrets", "outputs",
    "services", "name", "x-extra", "imag", "",
])


@functools.cache
def _seed(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _places(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _places(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _places(v, (*path, i))


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Path, Any]:
    seed = draw(st.sampled_from(SEEDS))
    data = copy.deepcopy(_seed(seed))
    for _ in range(draw(st.integers(1, 4))):
        places = list(_places(data))
        where = draw(st.sampled_from(places))
        op = draw(st.sampled_from(["value", "key", "drop", "add", "dup", "type"]))
        if not where:
            if op in ("value", "type"):
                data = draw(ODD)
            continue
        parent, last = _get(data, where[:-1]), where[-1]
        if op == "value":
            parent[last] = draw(ODD)
        elif op == "type":
            value = parent[last]
            parent[last] = [value] if not isinstance(value, list) else {"k": value}
        elif op == "drop":
            del parent[last]
        elif op == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif op == "key" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][draw(KEYS)] = draw(ODD)
    return seed, data


@pytest.fixture(scope="module")
def folders() -> Iterator[dict[Path, Path]]:
    """A copy of each seed's folder (build contexts and bind sources included) to write mutations into."""
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for i, seed in enumerate(SEEDS):
            target = Path(tmp) / str(i) / seed.parent.relative_to(ROOT)
            shutil.copytree(seed.parent, target, symlinks=True)
            out[seed] = target
        # The test blueprints build from blueprints/hello/web, four folders up.
        shutil.copytree(ROOT / "blueprints", Path(tmp) / "blueprints")
        for i in range(len(SEEDS)):
            shutil.copytree(ROOT / "blueprints", Path(tmp) / str(i) / "blueprints", dirs_exist_ok=True)
        yield out


def _check(file: Path) -> None:
    try:
        bp = load(file, {"DB_PASSWORD": "s3cr/et@x"})
    except BlueprintError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file == str(file) and p.line > 0 and p.column > 0, p
            assert "\n" not in p.path and "\n" not in p.message, p
        return
    assert isinstance(bp, Blueprint)
    try:
        api.plan(bp)
    except BlueprintError as exc:  # a build context that cannot be hashed is the one error a plan may raise
        assert all(p.line > 0 for p in exc.problems)


@FUZZ
@given(case=mutated())
def test_a_mutated_blueprint_loads_or_is_refused_with_positions(folders: dict[Path, Path],
                                                                case: tuple[Path, Any]) -> None:
    seed, data = case
    file = folders[seed] / "blueprint.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    _check(file)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,?\n 0.9$\\~é\t")), max_size=120))
def test_random_text_loads_or_is_refused_with_positions(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "blueprint.yaml"
        file.write_text(text, encoding="utf-8")
        try:
            load(file, {})
        except BlueprintError as exc:
            assert exc.problems and all(p.file == str(file) for p in exc.problems)
            assert all(p.line > 0 for p in exc.problems if "services" in p.path), exc
