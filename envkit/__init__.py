"""envkit: a private, production-like container environment for every integration-test run.

    import envkit
    with envkit.up("blueprints/shop") as env:
        env.outputs["API_URL"]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it (setuptools attr), the API labels runs with it.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from envkit.api import Environment, ServiceStatus, attach, down, ls, plan, up, validate
    from envkit.blueprint import Blueprint, load
    from envkit.errors import (
        BlueprintError,
        BuildFailed,
        EngineError,
        EngineUnavailable,
        EnvkitError,
        Interrupted,
        Problem,
        RunNotFound,
        ServiceFailed,
        UsageError,
    )
    from envkit.events import Event

# Public names load on first use (PEP 562): `envkit validate` should not pay for the engine client.
_HOME = {
    **dict.fromkeys(["Environment", "ServiceStatus", "attach", "down", "ls", "plan", "up", "validate"], "envkit.api"),
    **dict.fromkeys(["Blueprint", "load"], "envkit.blueprint"),
    **dict.fromkeys(["BlueprintError", "BuildFailed", "EngineError", "EngineUnavailable", "EnvkitError",
                     "Interrupted", "Problem", "RunNotFound", "ServiceFailed", "UsageError"], "envkit.errors"),
    "Event": "envkit.events",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'envkit' has no attribute {name!r}")



__all__ = [
    "Blueprint",
    "BlueprintError",
    "BuildFailed",
    "EngineError",
    "EngineUnavailable",
    "Environment",
    "EnvkitError",
    "Event",
    "Interrupted",
    "Problem",
    "RunNotFound",
    "ServiceFailed",
    "ServiceStatus",
    "UsageError",
    "attach",
    "down",
    "load",
    "ls",
    "plan",
    "up",
    "validate",
]
