"""Resets asked for from outside envkit's process (issue 11), the way a test runner in another language does
it between tests: ``envkit reset RUN db`` (a new process each time) against ``POST $ENVKIT_CONTROL_URL/reset``
(the ``envkit run`` process that holds the run, envkit.control).

    .venv/bin/python benchmarks/bench_control.py [--resets 40] [--json out.json]

``envkit run`` brings up a private copy of the seeded shop (a token of this benchmark in db's environment:
its own snapshot key) with ``--snapshot``, and runs this file again as its command. The command
alternates the two ways reset by reset, so that both see the same load; before each reset a "test" writes
1,000 orders over the published port, and after it a count checks that the reset took them away. It times
each reset as the runner sees it (wall time of the call: for the CLI, the process's start to its exit). The
snapshot this makes is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from benchmarks.bench_snapshots import pct, private_shop, stats, write_orders_host  # noqa: E402
from envkit import labels as L  # noqa: E402
from envkit import snapshots as S  # noqa: E402
from envkit.backends import connect  # noqa: E402

ENVKIT = Path(sys.executable).with_name("envkit")


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
        return int(row[0]) if row else -1


def by_cli() -> None:
    subprocess.run([str(ENVKIT), "reset", os.environ["ENVKIT_RUN"], "db"], check=True, capture_output=True)


def by_control() -> None:
    request = urllib.request.Request(os.environ["ENVKIT_CONTROL_URL"] + "/reset?service=db", method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200


def command(resets: int, out: Path) -> int:
    """Inside ``envkit run``: the resets, both ways, alternating."""
    import envkit

    key = envkit.attach(os.environ["ENVKIT_RUN"]).info.replicas("db")[0].labels[L.SNAPSHOT]
    out.with_suffix(".key").write_text(key, encoding="utf-8")  # for the cleanup, whatever follows
    url = os.environ["DATABASE_URL"]
    seeded = count(url)
    ways = {"cli": by_cli, "control": by_control}
    times: dict[str, list[float]] = {k: [] for k in ways}
    by_control()  # the first opens the kept psql session: not a test's reset
    for i in range(resets):
        for name in (("cli", "control") if i % 2 == 0 else ("control", "cli")):
            write_orders_host(url, 1000)
            time.sleep(0.3)  # a test's own time: the ready copy of the last reset is being made meanwhile
            began = time.monotonic()
            ways[name]()
            times[name].append(time.monotonic() - began)
            assert count(url) == seeded, f"{name}: the reset left the test's orders"
    result = {k: stats(v) for k, v in times.items()}
    result["ratio_p50_control_to_cli"] = {"value": pct(times["control"], 0.5) / pct(times["cli"], 0.5)}
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resets", type=int, default=40)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # the command envkit run runs
    args = ap.parse_args()
    if args.inside:
        return command(args.resets, args.inside)
    backend = connect("docker")
    with tempfile.TemporaryDirectory(prefix="envkit-bench-control-") as tmp:
        shop = private_shop(Path(tmp), "image")
        out = Path(tmp) / "result.json"
        try:
            load = os.getloadavg()[0]
            subprocess.run([str(ENVKIT), "run", str(shop), "--snapshot", "-q", "--", sys.executable, __file__,
                            "--resets", str(args.resets), "--inside", str(out)], check=True)
            result = json.loads(out.read_text(encoding="utf-8"))
        finally:
            if out.with_suffix(".key").exists():  # this benchmark's own key (its token): no one else's
                S.remove(backend, out.with_suffix(".key").read_text(encoding="utf-8"))
    result["load_before"] = load
    for name in ("cli", "control"):
        s = result[name]
        print(f"reset from outside, {name}: p50 {s['p50'] * 1000:.0f} ms, p95 {s['p95'] * 1000:.0f} ms over {s['n']}")
    print(f"control / cli at p50: {result['ratio_p50_control_to_cli']['value']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
