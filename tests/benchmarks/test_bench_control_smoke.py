"""``bench_control.py --resets 1``: resets from outside envkit's process, by ``envkit reset`` and by the
control endpoint of ``envkit run``, each checked to take the test's orders away (inside the benchmark),
and nothing left behind. Not a timing test: the numbers are only checked to be there."""

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
BENCH = ROOT / "benchmarks" / "bench_control.py"


def test_resets_from_outside_are_measured_both_ways_and_nothing_is_left(tmp_path: Path) -> None:
    backend = connect()
    try:
        def shops() -> set[str]:  # the shop's runs and snapshots (the benchmark's copy is named shop too)
            return ({r.name for r in backend.list_resources({L.MANAGED: "true", L.BLUEPRINT: "shop"})}
                    | {r.name for r in backend.list_resources({L.SNAPSHOT: None, L.BLUEPRINT: "shop"})})
        before = shops()
        out = tmp_path / "control.json"
        run = subprocess.run([sys.executable, str(BENCH), "--resets", "1", "--json", str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=550)
        assert run.returncode == 0, f"bench exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        doc = json.loads(out.read_text(encoding="utf-8"))
        for way in ("cli", "control"):
            assert doc[way]["n"] == 1 and doc[way]["p50"] > 0
        assert doc["ratio_p50_control_to_cli"]["value"] > 0
        assert shops() - before == set()  # neither its run nor its private snapshot is left
    finally:
        backend.close()
