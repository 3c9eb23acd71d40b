"""The swarm rig for the modules here: brought up once for the package (``swarm``, under the rig's lock),
with ``local_images`` (built on this machine's engine) loaded into every node, and always torn down after
the package's last test. A rig that cannot come up skips the tests with the rig's own error.

The bundled shop's images (``shop_images``: 4 images, about 600 MB per node) are loaded into the nodes in
the background from the rig's start on, while the other modules run (they mostly wait on Swarm), and
waited for by the tests that need them.

Every test blueprint here builds hello's ``web`` folder under the one name ``NAME``, so that one image
(content tag ``envkit/NAME-web:...``) serves them all and none is built inside a node. A module that
stops a node (``KILLS_A_NODE = True``) runs after the others: a stopped rig node does not come back."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect

from . import rig

HERE = Path(__file__).resolve().parent
HELLO = HERE.parents[1] / "blueprints" / "hello"
SHOP = HERE.parents[1] / "blueprints" / "shop"
NAME = "swarm-test"
WEB: dict[str, Any] = {"build": "./web", "stop_grace_period": "1s"}
#: two services (one of two replicas) on the hello image: spread over the nodes, reached from here
PAIR = {
    "name": NAME,
    "services": {
        "web": {**WEB, "ports": [8000], "replicas": 2, "ready": {"http": {"port": 8000, "path": "/health"}}},
        "api": {**WEB, "ports": [8000], "depends_on": ["web"],
                "ready": {"exec": ["python3", "-c", "import socket; socket.create_connection(('web', 8000))"]}},
    },
    "outputs": {"WEB": "http://${services.web.host}:${services.web.ports.8000}",
                "API": "http://${services.api.host}:${services.api.ports.8000}"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The package's tests that stop a node last among the package's (they stay one block: one rig)."""
    where = [i for i, item in enumerate(items) if HERE in Path(str(item.fspath)).parents]
    def kills(item: pytest.Item) -> bool:
        return bool(getattr(getattr(item, "module", None), "KILLS_A_NODE", False))

    block = sorted((items[i] for i in where), key=kills)
    for i, item in zip(where, block, strict=True):
        items[i] = item


def _engine_works() -> str | None:
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"})
    return None if done.returncode == 0 else "no Docker engine on /var/run/docker.sock"


@pytest.fixture(scope="package")
def local_images() -> dict[str, float]:
    """The test image, built on this machine's engine; also PAIR's up/down times there."""
    local = connect("docker", {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"})
    try:
        t0 = time.monotonic()
        env = api.up(PAIR, directory=HELLO, backend=local)
        t1 = time.monotonic()
        tags = sorted({c.labels[L.IMAGE] for c in local.list_containers({L.RUN: env.run_id})})
        env.down()
        t2 = time.monotonic()
    finally:
        local.close()
    return {"up": t1 - t0, "down": t2 - t1, **{tag: 0.0 for tag in tags}}


@pytest.fixture(scope="package")
def rig_up(request: pytest.FixtureRequest,
           local_images: dict[str, float]) -> Iterator[tuple[dict[str, str], Future[str]]]:
    """The rig's environment, and the shop's images being loaded into its nodes (when a test of the
    session needs them: nothing is loaded for a session of other swarm tests)."""
    reason = _engine_works()
    if reason:
        pytest.skip(reason)
    images = ("debian:bookworm-slim", *(t for t in local_images if ":" in t))
    wanted = any("shop_images" in getattr(item, "fixturenames", ()) for item in request.session.items)
    shop = rig.local_tags(SHOP) if wanted else []  # built on this machine's engine first, when missing there
    try:
        context = rig.running(3, images)
        environment = context.__enter__()
    except RuntimeError as exc:  # the rig could not come up here: infrastructure, reported as such
        pytest.skip(f"swarm rig unavailable: {exc}")
    loader = ThreadPoolExecutor(1)
    try:
        yield environment, loader.submit(rig.rig, "load", *shop, timeout=900) if shop else loader.submit(str)
    finally:
        loader.shutdown(wait=True)  # its error, if any, is the shop tests' to report
        context.__exit__(None, None, None)


@pytest.fixture(scope="package")
def swarm(rig_up: tuple[dict[str, str], Future[str]]) -> dict[str, str]:
    return rig_up[0]


@pytest.fixture(scope="package")
def shop_images(rig_up: tuple[dict[str, str], Future[str]]) -> None:
    """Once the shop's images are in every node (an error of the load fails the tests that need them)."""
    rig_up[1].result()


@pytest.fixture(scope="package")
def backend(swarm: dict[str, str]) -> Iterator[Backend]:
    engine = connect(environment={**os.environ, **swarm})
    yield engine
    engine.close()
