"""Helpers for the unit tests: blueprints written into a temporary folder and loaded from there."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from envkit.blueprint import Blueprint, load

WriteBlueprint = Callable[..., Path]


@pytest.fixture
def write_blueprint(tmp_path: Path) -> WriteBlueprint:
    """Write ``blueprint.yaml`` (dedented) and any extra files into a folder; returns the folder."""

    def write(text: str, files: Mapping[str, str] | None = None, folder: str = "bp") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        (root / "blueprint.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        for rel, content in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content, encoding="utf-8")
        return root

    return write


@pytest.fixture
def load_text(write_blueprint: WriteBlueprint) -> Callable[..., Blueprint]:
    """Write a blueprint and load it with an empty environment (nothing leaks in from the machine)."""

    def load_it(text: str, files: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None) -> Blueprint:
        return load(write_blueprint(text, files), env or {})

    return load_it
