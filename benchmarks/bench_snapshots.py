"""Snapshots and resets on the seeded shop (issue 11): up with seeding vs up from a snapshot, and reset
p50/p95 over N resets of the shop's database after a test wrote to it, for the PostgreSQL fast path
(template databases) and the generic path (restore from the snapshot).

    .venv/bin/python benchmarks/bench_snapshots.py [--resets 100] [--ups 3] [--json out.json]

The snapshot this makes is removed at the end (and any the shop had before is left alone only when it
is not the one this run would use: the first up must seed, so an existing one of the same key is
removed first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envkit  # noqa: E402
from envkit import labels as L  # noqa: E402
from envkit import snapshots as S  # noqa: E402
from envkit.backends import connect  # noqa: E402

SHOP = ROOT / "blueprints" / "shop"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_orders(env: envkit.Environment, n: int) -> None:
    sql = (f"INSERT INTO orders (customer_id, amount_cents, status) SELECT 1, g, 'pending' "
           f"FROM generate_series(1, {n}) g;")
    result = env.exec("db", ["psql", "-X", "-q", "-U", "shop", "-d", "shop", "-c", sql])
    assert result.exit_code == 0, result.output


def count_orders(env: envkit.Environment) -> int:
    out = env.exec("db", ["psql", "-X", "-At", "-U", "shop", "-d", "shop", "-c", "SELECT count(*) FROM orders"])
    return int(out.output.strip())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resets", type=int, default=100)
    ap.add_argument("--generic-resets", type=int, default=20)
    ap.add_argument("--ups", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    backend = connect()
    result: dict[str, object] = {}
    seeded, from_snapshot = [], []
    key = ""
    try:
        for i in range(args.ups):
            if key:
                S.remove(backend, key)  # every seeded up must miss
            began = time.monotonic()
            with envkit.up(SHOP, snapshot=["db"], backend=backend) as env:
                seeded.append(time.monotonic() - began)
                key = env.info.replicas("db")[0].labels[L.SNAPSHOT]
            print(f"up with seeding + capture #{i + 1}: {seeded[-1]:.2f}s", flush=True)
        plain = []
        for i in range(args.ups):
            began = time.monotonic()
            with envkit.up(SHOP, snapshot=False, backend=backend):
                plain.append(time.monotonic() - began)
            print(f"up with seeding (no snapshot) #{i + 1}: {plain[-1]:.2f}s", flush=True)
        for i in range(args.ups):
            began = time.monotonic()
            with envkit.up(SHOP, snapshot=["db"], backend=backend):
                from_snapshot.append(time.monotonic() - began)
            print(f"up from snapshot #{i + 1}: {from_snapshot[-1]:.2f}s", flush=True)
        if args.ups:
            result["up"] = {"seeded_no_snapshot_median": statistics.median(plain),
                            "seeded_and_capture_median": statistics.median(seeded),
                            "from_snapshot_median": statistics.median(from_snapshot),
                            "ratio": statistics.median(from_snapshot) / statistics.median(plain)}
        with envkit.up(SHOP, snapshot=["db"], backend=backend) as env:
            seeded_count = count_orders(env)
            base = []
            for _ in range(20):  # what one `docker exec` of psql costs here: the floor of the fast path
                began = time.monotonic()
                env.exec("db", ["psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
                base.append(time.monotonic() - began)
            result["exec_psql_select_1"] = {"p50": pct(base, 0.5), "p95": pct(base, 0.95)}
            print(f"one exec of psql (SELECT 1): p50 {pct(base, 0.5) * 1000:.0f} ms", flush=True)
            for path, n in (("template", args.resets), ("restore", args.generic_resets)):
                times = []
                for _ in range(n):
                    write_orders(env, 1000)
                    began = time.monotonic()
                    env.reset("db", path="restore" if path == "restore" else None)
                    times.append(time.monotonic() - began)
                    assert count_orders(env) == seeded_count
                result[f"reset_{path}"] = {"n": n, "p50": pct(times, 0.5), "p95": pct(times, 0.95),
                                           "min": min(times), "max": max(times)}
                print(f"reset ({path}) over {n}: p50 {pct(times, 0.5) * 1000:.0f} ms, "
                      f"p95 {pct(times, 0.95) * 1000:.0f} ms", flush=True)
    finally:
        if key:
            S.remove(backend, key)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
