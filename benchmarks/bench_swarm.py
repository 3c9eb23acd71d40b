"""envkit on a real Docker Swarm of three engines (tests/swarm/rig) against the single engine and against
`docker stack deploy` of the exported Compose file, in one run; plus how the shop's images reach the nodes
(save/load against a registry) and 16 runs at once spread over the nodes.

    .venv/bin/python benchmarks/bench_swarm.py [--reps 2] [--concurrent 16] [--json benchmarks/results/swarm.json]

Order: rig up (3 nodes); the shop's images into the nodes by `docker save | load` (timed), removed from
the nodes again and sent through a registry on the rig's network (push here, pull on every node, timed),
then tagged as envkit's content tags; `--reps` times each of: `envkit up/down blueprints/shop` on this
machine's engine, the same with `--engine swarm` (DOCKER_HOST at the manager), and `docker stack deploy
--detach=false` of `envkit export --format compose blueprints/shop` (the CLI waits until every service
converged) with `docker stack rm` until its services and networks are gone; then `--concurrent` envkit
runs of a one-service blueprint started at once on the swarm (wall time, tasks per node) and torn down at
once. The rig always goes down at the end. Each measured command is a CLI process, as a user runs it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from swarm import rig  # type: ignore[import-not-found]  # noqa: E402  (tests/swarm/rig.py)

from envkit import api  # noqa: E402
from envkit import labels as L  # noqa: E402
from envkit.backends import connect  # noqa: E402

SHOP = ROOT / "blueprints" / "shop"
HELLO = ROOT / "blueprints" / "hello"
CLI = [sys.executable, "-c", "from envkit.cli import main; main()"]
SMALL = {"name": "swarm-test", "services": {"web": {"build": "./web", "stop_grace_period": "1s",
                                                     "ready": {"exec": ["true"]}}}}


def timed(fn: Callable[[], object]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-4:])} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return done.stdout


def docker(where: str, *args: str, timeout: float = 600) -> str:
    return run(["docker", "-H", where, *args], timeout=timeout)


def images_into_nodes(tags: list[str], env: dict[str, str], registry: bool = True) -> dict[str, float]:
    nodes = [pair.partition("=")[2] for pair in env["ENVKIT_SWARM_NODES"].split(",")]
    out = {"load": timed(lambda: rig.rig("load", *tags, timeout=900))}
    if not registry:
        return out
    for where in nodes:
        docker(where, "rmi", *tags)
    out["registry_start"] = timed(lambda: rig.rig("registry"))
    out["registry_push"] = timed(lambda: rig.rig("push", *tags, timeout=900))

    def pull(where: str) -> None:
        for tag in tags:
            docker(where, "pull", "-q", f"rig-registry:5000/{tag}")

    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        out["registry_pull"] = timed(lambda: list(pool.map(pull, nodes)))
    for where in nodes:  # envkit's content tags, as the load path leaves them
        for tag in tags:
            docker(where, "tag", f"rig-registry:5000/{tag}", tag)
    out["registry_total"] = out["registry_push"] + out["registry_pull"]
    return out


def stack_converged(manager: str, stack: str, compose: Path) -> float:
    return timed(lambda: docker(manager, "stack", "deploy", "--detach=false", "--resolve-image", "never",
                                "-c", str(compose), stack, timeout=300))


def stack_removed(manager: str, stack: str) -> float:
    def remove() -> None:
        docker(manager, "stack", "rm", stack)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = docker(manager, "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}")
            left += docker(manager, "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}")
            if not left.strip():
                return
            time.sleep(0.2)
        raise RuntimeError(f"stack {stack} still there after 120 s")
    return timed(remove)


def concurrent_runs(env: dict[str, str], count: int) -> dict[str, Any]:
    backend = connect(environment={**os.environ, **env})
    try:
        def up(i: int) -> tuple[str, float]:
            mine = connect(environment={**os.environ, **env})
            try:
                t0 = time.monotonic()
                return api.up(SMALL, name=f"bsw-many-{i}", directory=HELLO, backend=mine).run_id, time.monotonic() - t0
            finally:
                mine.close()

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            t0 = time.monotonic()
            timed_runs = list(pool.map(up, range(count)))
            up_wall = time.monotonic() - t0
            runs = [r for r, _ in timed_runs]
            each = sorted(t for _, t in timed_runs)
            nodes = {n["ID"]: n["Description"]["Hostname"] for n in backend.api.nodes()}  # type: ignore[attr-defined]
            spread = Counter(nodes.get(t.get("NodeID", ""), "?") for s in backend.api.services(  # type: ignore[attr-defined]
                filters={"label": [f"{L.BLUEPRINT}=swarm-test"]}) for t in backend.api.tasks(  # type: ignore[attr-defined]
                filters={"service": s["ID"], "desired-state": "running"}))
            t0 = time.monotonic()
            list(pool.map(lambda r: api.down([r], backend=backend), runs))
            down_wall = time.monotonic() - t0
        left = backend.list_resources({L.BLUEPRINT: "swarm-test"})
    finally:
        backend.close()
    return {"runs": count, "up_wall": up_wall, "up_each_median": statistics.median(each), "up_each_max": each[-1],
            "down_wall": down_wall, "tasks_per_node": dict(sorted(spread.items())),
            "leftovers": [r.name for r in left]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--no-registry", action="store_true", help="skip the registry path for the shop's images")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "swarm.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"load_average_start": os.getloadavg()}
    tags = rig.local_tags(SHOP)
    compose = ROOT / "benchmarks" / "results" / "shop.stack.yaml"  # what was deployed, kept beside the results
    run([*CLI, "export", "--format", "stack", str(SHOP), "-o", str(compose)])
    with rig.LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            out["rig_up_s"] = timed(lambda: rig.rig("up", "3"))
            rig.rig("load", "debian:bookworm-slim", *small_tags(), timeout=600)
            env = rig.environment(3)
            out["shop_images"] = {"tags": tags, **images_into_nodes(tags, env, registry=not args.no_registry)}
            rows: dict[str, list[float]] = {k: [] for k in ("single_up", "single_down", "swarm_up", "swarm_down",
                                                            "stack_up", "stack_down")}
            out["shop_runs"] = rows  # filled as measured: kept when a later step fails
            for i in range(args.reps):
                for engine, where in (("single", rig.OUTER), ("swarm", env)):
                    up = [*CLI, "up", str(SHOP), "--name", f"bsw-{engine}-{i}"]
                    rows[f"{engine}_up"].append(timed(lambda up=up, where=where: run(up, where)))  # type: ignore[misc]
                    down = [*CLI, "down", f"bsw-{engine}-{i}"]
                    rows[f"{engine}_down"].append(timed(lambda down=down, where=where: run(down, where)))  # type: ignore[misc]
                try:
                    rows["stack_up"].append(stack_converged(env["DOCKER_HOST"], f"bsw-stack-{i}", compose))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # recorded; the other steps still run
                    out.setdefault("stack_errors", []).append(str(exc))
                rows["stack_down"].append(stack_removed(env["DOCKER_HOST"], f"bsw-stack-{i}"))
                out["shop"] = {k: {"runs": v, "median": statistics.median(v)} for k, v in rows.items()}
            out["concurrent"] = concurrent_runs(env, args.concurrent)
        finally:
            rig.rig("down")
            out["load_average_end"] = os.getloadavg()
            args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")  # what was measured, always
    shop = out["shop"]
    print(f"shop up   : single {shop['single_up']['median']:.1f}s  swarm {shop['swarm_up']['median']:.1f}s  "
          f"stack deploy {shop['stack_up']['median']:.1f}s")
    print(f"shop down : single {shop['single_down']['median']:.1f}s  swarm {shop['swarm_down']['median']:.1f}s  "
          f"stack rm {shop['stack_down']['median']:.1f}s")
    imgs = out["shop_images"]
    print(f"images into 3 nodes: load {imgs['load']:.1f}s" + (f"; registry push {imgs['registry_push']:.1f}s + pull "
          f"{imgs['registry_pull']:.1f}s" if "registry_push" in imgs else ""))
    many = out["concurrent"]
    print(f"{many['runs']} runs at once: up {many['up_wall']:.1f}s, down {many['down_wall']:.1f}s, tasks per node "
          f"{many['tasks_per_node']}, leftovers {many['leftovers']}")
    print(f"load average {out['load_average_start']} -> {out['load_average_end']}")
    return 0


def small_tags() -> list[str]:
    """The one-service blueprint's image (hello's web folder under SMALL's name), built here when missing."""
    local = connect("docker", {**os.environ, **rig.OUTER})
    try:
        env = api.up(SMALL, directory=HELLO, backend=local)
        tags = sorted({c.labels[L.IMAGE] for c in local.list_containers({L.RUN: env.run_id})})
        env.down()
    finally:
        local.close()
    return tags


if __name__ == "__main__":
    sys.exit(main())
