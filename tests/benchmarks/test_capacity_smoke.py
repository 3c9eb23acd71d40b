"""``bench.py --max-envs``: the capacity run end to end on one environment (envkit alone, no Compose) and
nothing left behind. Not a timing test: the numbers are only checked to be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BENCH, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_max_envs_reports_what_it_reached_and_the_idle_cost(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # A 2 s idle window instead of 10: the CPU is still sampled twice, some seconds apart.
    run = subprocess.run([sys.executable, str(BENCH), "--max-envs", "1", "--batch", "1", "--idle-window", "2",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=550)
    assert run.returncode == 0, f"bench exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    doc = json.loads((out / "capacity.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "envkit.bench.capacity/v1"
    assert (doc["asked"], doc["reached"], doc["networks"], doc["stopped_by"]) == (1, 1, 2, None)
    idle = doc["idle"]
    assert idle["containers"] == 5 and idle["memory_mb"] > 0 and idle["cpu_percent_of_machine"] >= 0
    assert idle["window_s"] >= 2
    assert "most concurrent shop environments: 1 of 1 asked (5 containers, 2 networks)" in run.stdout
    assert "left behind" not in run.stderr
