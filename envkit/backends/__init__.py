"""Container engine backends, and the one place that chooses among them: ``connect()``.

An engine is one module here plus one line in ``ENGINES``: its name (as given to ``--engine`` or in
``ENVKIT_ENGINE``) and the module, which defines ``open_backend(environment) -> Backend``. The module
is imported only when chosen, so ``envkit validate`` never loads an engine client.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import cast

from envkit.backends.base import Backend
from envkit.errors import UsageError

__all__ = ["DEFAULT_ENGINE", "ENGINES", "Backend", "connect", "engine_name"]

#: engine name -> module defining ``open_backend(environment: Mapping[str, str]) -> Backend``
ENGINES: Mapping[str, str] = {
    "docker": "envkit.backends.docker",
    "swarm": "envkit.backends.swarm",
    "kubernetes": "envkit.backends.kubernetes",
}
DEFAULT_ENGINE = "docker"


def engine_name(engine: str | None = None, environment: Mapping[str, str] | None = None) -> str:
    """The engine asked for: ``engine`` (``--engine``), else ``ENVKIT_ENGINE``, else docker.
    Raises UsageError naming the known engines for any other name."""
    env = os.environ if environment is None else environment
    name = (engine or env.get("ENVKIT_ENGINE") or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        source = "--engine" if engine else "ENVKIT_ENGINE"
        raise UsageError(f"{source}: unknown engine '{name}' (known engines: {', '.join(sorted(ENGINES))})")
    return name


def connect(engine: str | None = None, environment: Mapping[str, str] | None = None) -> Backend:
    """The chosen engine's backend (see ``engine_name``), configured from ``environment`` (default:
    this process's) and checked to answer (EngineUnavailable otherwise)."""
    env = dict(os.environ if environment is None else environment)
    name = engine_name(engine, env)
    module = importlib.import_module(ENGINES[name])
    opener = cast(Callable[[Mapping[str, str]], Backend], module.open_backend)
    backend = opener(env)
    backend.origin = (name, env)
    try:
        backend.ping()
    except BaseException:
        backend.close()
        raise
    return backend
