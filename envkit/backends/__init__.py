"""Container engine backends. ``connect()`` gives the one for this machine (a Docker engine today)."""

from __future__ import annotations

from collections.abc import Mapping

from envkit.backends.base import Backend

__all__ = ["Backend", "connect"]


def connect(environment: Mapping[str, str] | None = None) -> Backend:
    """The Docker engine named by DOCKER_HOST (or the local socket), checked to answer."""
    from envkit.backends.docker import DockerBackend  # imported on use: `envkit validate` needs no engine

    backend = DockerBackend(environment)
    backend.ping()
    return backend
