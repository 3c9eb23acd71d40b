"""Offline validation of Kubernetes objects against the schemas ``kubernetes-validate`` carries.

``kubernetes_validate.validate`` reads the schema files again for every object; the tests validate
hundreds, so this keeps one validator per (minor, kind) and uses the package's own strict schemas
(unknown fields are errors, as ``kubectl apply --validate=strict`` makes them)."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import importlib_resources
import jsonschema
import kubernetes_validate
from packaging.version import Version
from referencing import Registry, Resource

__all__ = ["NEWEST", "validate"]

#: the three newest Kubernetes minors the package has schemas for, e.g. ("1.35", "1.36", "1.37")
NEWEST: tuple[str, ...] = tuple(sorted({kubernetes_validate.utils.major_minor(v)
                                        for v in kubernetes_validate.utils.all_versions()}, key=Version)[-3:])


def _schema(version: str, name: str) -> Any:
    folder = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema"
    full = next(v for v in reversed(kubernetes_validate.utils.all_versions())
                if kubernetes_validate.utils.major_minor(v) == version)
    return json.loads((folder / f"v{full}-local-strict" / name).read_text())


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _schema(version, f"{kind.lower()}-{api}.json")
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_schema(version, "_definitions.json")) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate(obj: dict[str, Any], version: str) -> list[str]:
    """The schema errors of ``obj`` for Kubernetes ``version`` (a minor), as ``path: message`` lines."""
    validator = _validator(version, obj["kind"], obj["apiVersion"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
