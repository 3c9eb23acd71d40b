"""The loading pipeline: file (or mapping) → raw data (with marks) → interpolated → normalised model → checked."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envkit.blueprint import compose_hints, dotenv, trust
from envkit.blueprint.interpolate import interpolate
from envkit.blueprint.model import Blueprint
from envkit.blueprint.normalize import normalize
from envkit.blueprint.source import Source, read_mapping, read_source
from envkit.blueprint.validate import check
from envkit.errors import BlueprintError, Problem

__all__ = ["load"]


def load(blueprint: str | Path | Mapping[str, Any], env: Mapping[str, str] | None = None,
         env_files: Sequence[str | Path] | None = None, *, directory: str | Path | None = None,
         origin: str = "<mapping>") -> Blueprint:
    """Load and fully validate a blueprint; raises BlueprintError listing every problem found.

    ``blueprint``: a YAML file, a folder holding ``blueprint.yaml``, or the same data as a mapping
    (its relative paths start from ``directory``, else the current folder; ``origin`` names it in errors).
    ``${VAR}`` reads ``env`` (default: the process environment) over the variables of ``env_files``, in
    order; None reads the ``.env`` beside a blueprint file (a mapping has none), as Compose does
    (``envkit.blueprint.dotenv``)."""
    if isinstance(blueprint, Mapping):
        source = read_mapping(blueprint, Path(directory) if directory is not None else Path.cwd(), origin)
        default_dir = path = None
    else:
        source = read_source(blueprint)
        default_dir, path = source.directory, source.directory / source.file.name
    variables = dotenv.variables(os.environ if env is None else env, env_files, default_dir)
    return _build(source, variables, path)


def _build(source: Source, variables: Mapping[str, str], path: Path | None) -> Blueprint:
    problems: list[Problem] = []
    used: dict[str, set[str]] = {}
    data = interpolate(source.data, variables, source.marks, problems, used)
    model, found = normalize(data, source.marks, source.file, source.directory, used)
    problems.extend(found)
    # Names declared in the file but dropped for their own errors are not "unknown" where referenced.
    declared = {key: set(data[key]) if isinstance(data.get(key), dict) else set()
                for key in ("services", "networks", "volumes")}
    problems.extend(check(model, source.marks, declared))
    refused, warnings = trust.check(model, source.marks, variables)
    problems.extend(refused)
    if problems:
        hint = ""
        if compose_hints.looks_like_compose(source.data):  # said once, first, rather than read from 20 lines
            hint = (f"{source.marks.file} is written as a Docker Compose file: `envkit import {source.marks.file} "
                    "-o blueprint.yaml` writes it as a blueprint (noting what does not carry over), to bring up "
                    "with `envkit up blueprint.yaml`")
        raise BlueprintError(problems, hint=hint)
    return dataclasses.replace(model, marks=source.marks, warnings=tuple(sorted(set(warnings))), path=path)
