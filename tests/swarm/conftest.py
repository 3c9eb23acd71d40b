"""The swarm rig for the modules here: brought up once per module (``swarm``, under the rig's lock), with
the module's ``local_images`` (built on this machine's engine) loaded into every node, and always torn
down at the module's end. A rig that cannot come up skips the module with the rig's own error."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from envkit.backends import Backend, connect

from . import rig


def _engine_works() -> str | None:
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"})
    return None if done.returncode == 0 else "no Docker engine on /var/run/docker.sock"


@pytest.fixture(scope="module")
def swarm(local_images: dict[str, float]) -> Iterator[dict[str, str]]:
    reason = _engine_works()
    if reason:
        pytest.skip(reason)
    images = ("debian:bookworm-slim", *(t for t in local_images if ":" in t))
    try:
        context = rig.running(3, images)
        environment = context.__enter__()
    except RuntimeError as exc:  # the rig could not come up here: infrastructure, reported as such
        pytest.skip(f"swarm rig unavailable: {exc}")
    try:
        yield environment
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def backend(swarm: dict[str, str]) -> Iterator[Backend]:
    engine = connect(environment={**os.environ, **swarm})
    yield engine
    engine.close()
