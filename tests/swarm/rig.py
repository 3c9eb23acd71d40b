"""The swarm rig (tests/swarm/rig, a copy of this workplace's swarm-rig) as the tests use it: brought up
once per session under a lock (its names are fixed: one rig per engine), described to envkit through
the ``ENVKIT_SWARM_*`` variables (envkit/backends/_swarm_nodes.py), torn down at the end.

``ENVKIT_TEST_SWARM_KEEP=1`` leaves the rig (and the images loaded into its nodes) up after the session,
for iterating on the swarm tests: `up` keeps healthy nodes, so the next session starts in ~4 s. Remove it
with `bash tests/swarm/rig/swarm-rig.sh down`."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envkit import api
from envkit.backends import connect
from envkit.blueprint import load
from envkit.images import image_tags

SCRIPT = Path(__file__).resolve().parent / "rig" / "swarm-rig.sh"
LOCK = Path("/tmp/envkit-swarm-rig.lock")
OUTER = {"DOCKER_HOST": "unix:///var/run/docker.sock"}


def rig(*args: str, timeout: float = 180) -> str:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"swarm-rig.sh {' '.join(args)} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def environment(nodes: int) -> dict[str, str]:
    """ENVKIT_ENGINE=swarm, DOCKER_HOST at the manager, and where each node's engine and ports are reached."""
    engines, ports = [], []
    for i in range(1, nodes + 1):
        name = f"rig-node{i}"
        out = subprocess.run(["docker", "port", name], capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin", **OUTER}).stdout
        for inner, host, port in re.findall(r"^(\d+)/tcp -> (127\.0\.0\.1):(\d+)$", out, re.M):
            if inner == "2375":
                engines.append(f"{name}=tcp://{host}:{port}")
            else:
                ports.append(f"{name}:{inner}={host}:{port}")
    manager = next(e.partition("=")[2] for e in engines if e.startswith("rig-node1="))
    return {"ENVKIT_ENGINE": "swarm", "DOCKER_HOST": manager, "ENVKIT_SWARM_NODES": ",".join(engines),
            "ENVKIT_SWARM_PORTS": ",".join(ports), "ENVKIT_SWARM_PUBLISH": "30000-30004"}


def local_tags(blueprint: Path) -> list[str]:
    """The content tags of ``blueprint``'s images (its builds, its stubs' image) on this machine's engine,
    built there first when one is missing (an up without seeds, removed again): what `load` sends to the nodes."""
    bp = load(blueprint, {})
    tags = sorted(set(image_tags(bp, bp.services).values()))
    local = connect("docker", {**os.environ, **OUTER})
    try:
        if not all(local.image_exists(t) for t in tags):
            api.up(blueprint, backend=local, seed=False).down()
    finally:
        local.close()
    return tags


@contextmanager
def running(nodes: int = 3, images: tuple[str, ...] = ("debian:bookworm-slim",)) -> Iterator[dict[str, str]]:
    """Up (under the lock), the images loaded into every node, the environment; always down afterwards."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rig("up", str(nodes))
            rig("load", *images)
            yield environment(nodes)
        finally:
            if os.environ.get("ENVKIT_TEST_SWARM_KEEP") != "1":
                rig("down")
