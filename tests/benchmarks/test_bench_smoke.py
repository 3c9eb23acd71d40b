"""The benchmark runs end to end (``--quick``: one envkit/Compose pair, one environment) and leaves
nothing behind. Not a timing test: the numbers are only checked to be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BENCH, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def remaining(label: str, prefix: str) -> list[str]:
    """Containers, networks and volumes whose ``label`` value starts with the benchmark's prefix."""
    import docker

    client = docker.from_env()
    try:
        api = client.api
        found = [c["Names"][0] for c in api.containers(all=True, filters={"label": label})
                 if c["Labels"].get(label, "").startswith(prefix)]
        found += [n["Name"] for n in api.networks(filters={"label": label})
                  if (n.get("Labels") or {}).get(label, "").startswith(prefix)]
        found += [v["Name"] for v in api.volumes(filters={"label": label}).get("Volumes") or []
                  if (v.get("Labels") or {}).get(label, "").startswith(prefix)]
    finally:
        client.close()
    return found


def test_quick_benchmark_measures_both_tools_and_cleans_up(tmp_path: Path, compose_binary: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=850)
    assert run.returncode == 0, f"bench exited {run.returncode}:\n{run.stdout}\n{run.stderr}"

    document = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert document["status"] == "ok" and document["mode"] == "quick"
    for metric in ("up_1", "down_1"):
        entry = document["metrics"][metric]
        for tool in ("envkit", "compose"):
            assert len(entry[tool]["samples"]) == 1 and entry[tool]["median"] > 0, (metric, tool, entry)
        assert entry["ratio_median"] > 0
    assert document["skipped"]["seeded_snapshot"]
    machine = document["machine"]
    assert machine["nproc"] and machine["compose_version"].startswith("5.") and machine["engine_version"]
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3

    png = out / "latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    prefix = document["prefix"] + "-"
    assert document["leftovers"] == []
    assert remaining("io.envkit.run", prefix) == []
    assert remaining("com.docker.compose.project", prefix) == []
