"""``bench_faults.py --quick``: the fault proxy's cost measured in all three places (the proxy program on
127.0.0.1, between two containers of a run, from the host) and nothing left behind. Not a timing test:
the numbers are only checked to be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends import connect

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
BENCH = ROOT / "benchmarks" / "bench_faults.py"


def test_quick_fault_proxy_benchmark_measures_every_place_and_cleans_up(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=550)
    assert run.returncode == 0, f"bench exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    doc = json.loads((tmp_path / "faults.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "envkit.bench.faults/v1" and doc["mode"] == "quick"
    assert set(doc["results"]) == {"local", "containers", "host"}
    for place, figures in doc["results"].items():
        for key in ("kept_p50_us", "kept_p99_us", "new_p50_us", "new_p99_us"):
            assert figures[key]["direct"] > 0 and figures[key]["proxy"] > 0, (place, key)
        for key in ("upstream_MBps", "downstream_MBps"):
            assert figures[key]["direct"] > 0 and figures[key]["share"] > 0, (place, key)
        assert len(doc["raw"][place]["direct"]) == len(doc["raw"][place]["proxy"]) == 1
    assert len(doc["loadavg_start"]) == 3
    backend = connect()
    try:
        assert backend.list_resources({L.MANAGED: "true", L.RUN: doc["run"]}) == []
    finally:
        backend.close()
