"""The loading pipeline: file → raw data (with marks) → interpolated → normalised model → checked."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from envkit.blueprint import trust
from envkit.blueprint.interpolate import interpolate
from envkit.blueprint.model import Blueprint
from envkit.blueprint.normalize import normalize
from envkit.blueprint.source import read_source
from envkit.blueprint.validate import check
from envkit.errors import BlueprintError, Problem

__all__ = ["load"]


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Blueprint:
    """Load and fully validate a blueprint; raises BlueprintError listing every problem found."""
    source = read_source(path)
    problems: list[Problem] = []
    env = os.environ if env is None else env
    used: dict[str, set[str]] = {}
    data = interpolate(source.data, env, source.marks, problems, used)
    model, found = normalize(data, source.marks, source.file, source.directory, used)
    problems.extend(found)
    # Names declared in the file but dropped for their own errors are not "unknown" where referenced.
    declared = {key: set(data[key]) if isinstance(data.get(key), dict) else set()
                for key in ("services", "networks", "volumes")}
    problems.extend(check(model, source.marks, declared))
    refused, warnings = trust.check(model, source.marks, env)
    problems.extend(refused)
    if problems:
        raise BlueprintError(problems)
    return dataclasses.replace(model, marks=source.marks, warnings=tuple(sorted(set(warnings))))
