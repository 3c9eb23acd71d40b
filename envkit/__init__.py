"""envkit: a private, production-like container environment for every integration-test run.

    import envkit
    with envkit.up("blueprints/shop") as env:
        env.outputs["API_URL"]
"""

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

__version__ = "0.1.0"

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
