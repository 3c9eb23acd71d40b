"""The swarm rig (tests/swarm/rig, a copy of this workplace's swarm-rig) as the tests use it: brought up
once per session under a lock (its names are fixed: one rig per engine), described to envkit through
the ``ENVKIT_SWARM_*`` variables (envkit/backends/_swarm_nodes.py), torn down at the end."""

from __future__ import annotations

import fcntl
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
            rig("down")
