"""`kind: stub` (issue 13): how fast a stub is ready once its container starts, and what one request and
one journal read cost through the published port.

    .venv/bin/python benchmarks/bench_stubs.py [--ups 5] [--requests 500] [--json out.json]

Each up brings only the `gateway` stub of tests/blueprints/good/stub up (its image is built once, before
the first measured up) and is removed after. Timings come from the plan's events: `start` is the
container start step, `ready` the readiness wait after it (the stub's own start-up plus the probe).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envkit  # noqa: E402
from envkit.events import Event  # noqa: E402

BLUEPRINT = ROOT / "tests" / "blueprints" / "good" / "stub"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ups", type=int, default=5)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with envkit.up(BLUEPRINT, only=("gateway",), name="bench-stub-warm"):
        pass  # builds the image once
    ready: list[float] = []
    start: list[float] = []
    up_total: list[float] = []
    request_ms: list[float] = []
    journal_ms: list[float] = []
    for i in range(args.ups):
        events: list[Event] = []
        t0 = time.monotonic()
        with envkit.up(BLUEPRINT, only=("gateway",), name=f"bench-stub-{i}", on_event=events.append) as env:
            up_total.append(time.monotonic() - t0)
            for e in events:
                if e.kind == "step" and e.phase == "done" and e.service == "gateway":
                    if e.action == "ready":
                        ready.append(e.duration)
                    elif e.action == "start":
                        start.append(e.duration)
            if i == 0:
                url = env.outputs["GATEWAY_URL"] + "/charges/ch_1"
                stub = env.stub("gateway")
                for _ in range(args.requests):
                    t = time.perf_counter()
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        answer.read()
                    request_ms.append((time.perf_counter() - t) * 1000)
                for _ in range(50):
                    t = time.perf_counter()
                    stub.called("GET")
                    journal_ms.append((time.perf_counter() - t) * 1000)
    result = {
        "ups": args.ups,
        "start_step_s": {"p50": statistics.median(start), "max": max(start)} if start else None,
        "ready_after_start_s": {"p50": statistics.median(ready), "max": max(ready)},
        "up_total_s": {"p50": statistics.median(up_total), "max": max(up_total)},
        "request_ms": {"p50": pct(request_ms, 0.5), "p99": pct(request_ms, 0.99), "n": len(request_ms)},
        "journal_of_n_ms": {"p50": pct(journal_ms, 0.5), "n_entries": args.requests},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
