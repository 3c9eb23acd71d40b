"""Hostile or odd YAML ends in a well-formed envkit error (or a faithful value), never a traceback or an
exhausted machine: alias bombs, recursive aliases, deep nesting, huge files and numbers, YAML 1.1 coercions."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from envkit.blueprint.source import MAX_BYTES, read_source
from envkit.errors import BlueprintError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _read(tmp_path: Path, text: str) -> object:
    path = tmp_path / "blueprint.yaml"
    path.write_text(text, encoding="utf-8")
    return read_source(path).data


def _problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(BlueprintError) as info:
        _read(tmp_path, text)
    (problem,) = info.value.problems
    return str(problem)


def test_an_alias_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    assert len(BOMB) < 600  # 9**9 values once expanded
    tracemalloc.start()
    try:
        message = _problem(tmp_path, BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "blueprint.yaml:" in message and "aliases are expanded" in message
    assert peak < 200 * 1024 * 1024


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a {b: [1, {c: *a}]}\n"])
def test_a_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    assert "recursive alias" in _problem(tmp_path, text)


@pytest.mark.parametrize("depth", [100, 900, 5000])
def test_deep_nesting_is_refused_with_a_position(tmp_path: Path, depth: int) -> None:
    message = _problem(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
    assert "nested too deeply" in message
    assert "blueprint.yaml:1:" in message


def test_moderate_nesting_is_fine(tmp_path: Path) -> None:
    assert _read(tmp_path, "a: " + "[" * 30 + "]" * 30 + "\n")


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    message = _problem(tmp_path, "a: '" + "x" * (MAX_BYTES + 1) + "'\n")
    assert "at most 2 MiB" in message


def test_a_5000_digit_number_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    assert "cannot read this value" in _problem(tmp_path, "a: " + "9" * 5000 + "\n")


def test_yaml_1_1_coercions_do_not_change_values(tmp_path: Path) -> None:
    data = _read(tmp_path, "OFF: off\nyes: no\nmode: 0755\noctal: 0o755\nhex: 0x1F\nport: 22:22\nt: true\nf: False\n")
    assert data == {"OFF": "off", "yes": "no", "mode": "0755", "octal": 493, "hex": 31, "port": "22:22",
                    "t": True, "f": False}


def test_merge_keys_still_work(tmp_path: Path) -> None:
    assert _read(tmp_path, "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n") == {"base": {"x": 1}, "c": {"x": 1, "y": 2}}
