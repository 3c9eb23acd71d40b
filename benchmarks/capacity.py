"""How many shop environments live at once on one engine with default daemon settings, and what they
cost while idle (``bench.py --max-envs N``).

Environments are brought up in batches of ``--batch`` (default 8) parallel ``envkit up`` processes,
each batch kept while the next one starts, until N are up or an ``up`` fails; the most reached is
the result (without envkit's own address pool, Docker's default pools stop it at 15). Then, with
every environment idle for ``IDLE_WINDOW`` seconds, the engine's one-shot stats of their containers
give the memory they hold and the CPU they use (envkit runs no probes once a run is ready). Then
everything is removed, batch by batch, and ``<out>/capacity.json`` holds the numbers.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.bench import Bench

__all__ = ["IDLE_WINDOW", "max_envs"]

IDLE_WINDOW = 10.0  # seconds between the two CPU samples
DOWN_PER_PROCESS = 4  # runs per `envkit down` process
DOWN_PARALLEL = 8  # `envkit down` processes at once


def _census(bench: Bench, runs: list[str]) -> tuple[list[str], int]:
    """The running containers of these runs (ids), and how many networks the runs hold."""
    client = bench._engine()
    try:
        ids, networks = [], 0
        for r in runs:
            selector = {"label": f"io.envkit.run={r}"}
            ids += [c["Id"] for c in client.api.containers(filters=selector)]
            networks += len(client.api.networks(filters=selector))
        return ids, networks
    finally:
        client.close()


def _sample(bench: Bench, ids: list[str]) -> dict[str, tuple[int, int]]:
    """Container id -> (memory in use, without the page cache, in bytes; CPU time used so far, in ns)."""
    client = bench._engine()

    def one(ident: str) -> tuple[str, tuple[int, int]]:
        stats = client.api.stats(ident, stream=False, one_shot=True)
        memory = stats.get("memory_stats") or {}
        usage = int(memory.get("usage") or 0)
        cache = int((memory.get("stats") or {}).get("total_inactive_file")
                    or (memory.get("stats") or {}).get("inactive_file") or 0)
        cpu = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
        return ident, (max(0, usage - cache), cpu)

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            return dict(pool.map(one, ids))
    finally:
        client.close()


def idle_cost(bench: Bench, runs: list[str], window: float = IDLE_WINDOW) -> dict[str, Any]:
    ids, networks = _census(bench, runs)
    if not ids:
        return {"containers": 0, "networks": networks}
    first, began = _sample(bench, ids), time.monotonic()
    time.sleep(max(0.0, window - (time.monotonic() - began)))
    second, seconds = _sample(bench, ids), time.monotonic() - began
    cpu_ns = sum(max(0, second[i][1] - first[i][1]) for i in ids if i in first and i in second)
    memory = sum(v[0] for v in second.values())
    cpus = os.cpu_count() or 1
    return {
        "containers": len(ids),
        "networks": networks,
        "memory_mb": round(memory / 2**20, 1),
        "memory_mb_per_env": round(memory / 2**20 / len(runs), 1),
        "cpu_percent_of_machine": round(100 * cpu_ns / 1e9 / seconds / cpus, 2),
        "window_s": round(seconds, 1),
    }


def max_envs(bench: Bench, blueprint: Path, limit: int, batch: int, out: Path,
             failure: type[Exception], idle_window: float = IDLE_WINDOW) -> dict[str, Any]:
    """Bring up to ``limit`` environments up, ``batch`` at a time; measure; remove them; write the JSON.
    ``failure``: what ``bench.procs.run_all`` raises when a command fails (bench.py's BenchError);
    ``idle_window``: seconds between the two CPU samples (the test suite's smoke run takes a short one)."""
    up: list[str] = []
    batches: list[dict[str, Any]] = []
    stopped_by = None
    bench.say(f"max-envs: up to {limit} environments of {blueprint.name}, {batch} at a time")
    while len(up) < limit:
        names = bench._names("envkit", min(batch, limit - len(up)))
        try:
            seconds, _ = bench.procs.run_all([[bench.envkit, "up", str(blueprint), "--name", r] for r in names])
        except failure as exc:
            stopped_by = str(exc).strip().splitlines()[-1]
            up += [r for r in names if r in set(bench._engine_runs())]
            bench.say(f"max-envs: stopped at {len(up)}: {stopped_by}")
            break
        up += names
        batches.append({"size": len(names), "seconds": round(seconds, 2), "load": list(os.getloadavg())})
        bench.say(f"max-envs: {len(up)} up (this batch of {len(names)} in {seconds:.1f}s)")
    idle = idle_cost(bench, up, idle_window) if up else {"containers": 0, "networks": 0}
    bench.say(f"max-envs: idle: {idle}")
    began = time.perf_counter()
    step = DOWN_PER_PROCESS * DOWN_PARALLEL
    for i in range(0, len(up), step):
        chunk = up[i:i + step]
        bench.procs.run_all([[bench.envkit, "down", *chunk[j:j + DOWN_PER_PROCESS]]
                             for j in range(0, len(chunk), DOWN_PER_PROCESS)])
    result = {
        "schema": "envkit.bench.capacity/v1",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "blueprint": blueprint.name,
        "asked": limit,
        "reached": len(up),
        "networks": idle.get("networks", 0),
        "stopped_by": stopped_by,
        "batch": batch,
        "batches": batches,
        "idle": idle,
        "down_all_s": round(time.perf_counter() - began, 1),
        "subnet_pool": os.environ.get("ENVKIT_SUBNET_POOL") or "default (10.208.0.0/12 in /24s)",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
