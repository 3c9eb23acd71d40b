"""Forensics bundles on the real engine: a service that never gets ready is named, with its logs and its
probe history; `envkit collect` on a live run."""

from __future__ import annotations

import json
from pathlib import Path

import envkit
from envkit.backends import Backend

from .conftest import BLUEPRINTS, TEST_BLUEPRINTS, envkit_cli, resources_of


def test_a_service_that_never_gets_ready_yields_a_bundle_that_names_it(backend: Backend, tmp_path: Path) -> None:
    result = envkit_cli("up", str(TEST_BLUEPRINTS / "never-ready"), "--name", "it-fx-never",
                        "--artifacts", str(tmp_path))
    assert result.returncode == 6, result.stderr
    bundle = tmp_path / "it-fx-never"
    assert f"forensics bundle: {bundle / 'SUMMARY.txt'}" in result.stderr
    assert resources_of(backend, "it-fx-never") == []  # removed after the bundle was written
    summary = (bundle / "SUMMARY.txt").read_text()
    lines = summary.splitlines()
    assert lines[0].startswith("envkit: run it-fx-never failed to come up after ")
    assert lines[2].startswith("culprit: service sleepy — not ready after 3s (probe: tcp 9999; last result: ")
    assert "  waited for: tcp 9999" in summary and "waiting for it: client (ready)" in summary
    assert "    | sleepy: still not listening on 9999" in summary
    logs = (bundle / "services" / "envkit-it-fx-never-sleepy-1" / "logs.txt").read_text()
    assert "sleepy: warming up" in logs
    inspect = json.loads((bundle / "services" / "envkit-it-fx-never-sleepy-1" / "inspect.json").read_text())
    assert inspect["status"] == "running" and inspect["blueprint_service"]["ready"]["port"] == 9999
    probes = [line for line in (bundle / "probes.txt").read_text().splitlines() if "tcp 9999" in line]
    assert probes and all("not yet" in line for line in probes)
    plan = (bundle / "plan.txt").read_text()
    assert "ready:sleepy-1" in plan and "failed: service sleepy" in plan
    events = [json.loads(line) for line in (bundle / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "step" and e["phase"] == "failed" and e["service"] == "sleepy" for e in events)


def test_collect_on_a_live_run(backend: Backend, tmp_path: Path) -> None:
    envkit_cli("up", str(BLUEPRINTS / "hello"), "--name", "it-fx-live", check=True)
    try:
        result = envkit_cli("collect", "it-fx-live", str(tmp_path / "b"), "--reason", "a look", check=True)
        assert f"wrote {tmp_path / 'b' / 'SUMMARY.txt'}" in result.stdout
        summary = (tmp_path / "b" / "SUMMARY.txt").read_text()
        assert summary.startswith("envkit: run it-fx-live, collected ") and ": a look" in summary.splitlines()[0]
        assert "no service is at fault: every service is up and ready" in summary
        assert "ready    now: http 8000/health: GET /health: 200" in (tmp_path / "b" / "probes.txt").read_text()
        assert (tmp_path / "b" / "services" / "envkit-it-fx-live-web-1" / "logs.txt").exists()
    finally:
        envkit.down(["it-fx-live"], backend=backend)
    assert resources_of(backend, "it-fx-live") == []
