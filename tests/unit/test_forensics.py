"""Forensics bundles on the in-memory engine: a failed up names its culprit, with its logs, probe history,
plan timing and events; a live run on demand; secrets masked everywhere."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.base import ExecResult
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.cli import main
from envkit.errors import ServiceFailed
from envkit.events import Event

BLUEPRINT = """
    name: shop
    services:
      db:
        image: postgres:16
        environment:
          POSTGRES_PASSWORD: s3cr/et@x
        ready:
          exec: ["pg_isready"]
          timeout: 0.6s
      cache:
        image: redis:7
      api:
        image: python:3
        depends_on: [db, cache]
        environment:
          DATABASE_URL: postgresql://app:hunter22@db:5432/app
"""


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"postgres:16", "redis:7", "python:3"})
    fake.log_text["db"] = "starting\nFATAL: password s3cr/et@x rejected for postgresql://app:hunter22@db/app\n"
    fake.log_text["cache"] = "Ready to accept connections\n"
    return fake


def every_file(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failing_service_leaves_a_bundle_that_names_it(shop: Blueprint, fake: FakeBackend, tmp_path: Path) -> None:
    fake.exec_results["db"] = ExecResult(2, "no response")
    notes: list[Event] = []
    with pytest.raises(ServiceFailed):
        api.up(shop, name="f-1", backend=fake, artifacts=tmp_path, on_event=notes.append)
    assert fake.list_resources({L.RUN: "f-1"}) == []  # rolled back after the bundle was written
    bundle = tmp_path / "f-1"
    assert [e.message for e in notes if e.kind == "note"] == [f"forensics bundle: {bundle / 'SUMMARY.txt'}"]
    files = every_file(bundle)
    assert set(files) == {"SUMMARY.txt", "error.txt", "services.txt", "probes.txt", "plan.txt", "events.jsonl",
                          *(f"services/envkit-f-1-{s}-1/{f}" for s in ("db", "cache", "api")
                            for f in ("logs.txt", "inspect.json"))}
    summary = files["SUMMARY.txt"].splitlines()
    assert summary[0].startswith("envkit: run f-1 failed to come up after ")
    assert summary[2].startswith("culprit: service db — not ready after 600ms (probe: exec pg_isready; "
                                 "last result: exit 2: no response)")
    text = files["SUMMARY.txt"]
    assert "container envkit-f-1-db-1: running" in text
    assert "waited for: exec pg_isready" in text
    assert "not yet  exec pg_isready: exit 2: no response" in text
    assert "waiting for it: api (ready)" in text
    assert "    | FATAL: password **** rejected for postgresql://app:****@db/app" in text
    assert "  cache" in text and "api" in text
    assert len(summary) < 60  # one screen
    assert "FATAL" in files["services/envkit-f-1-db-1/logs.txt"]
    # Probe history: what was tried, when, how often, what came back.
    probes = [line for line in files["probes.txt"].splitlines() if "pg_isready" in line]
    assert probes and all("not yet" in line for line in probes)
    assert int(probes[0].split()[3].lstrip("x")) >= 3  # polled for 0.6s: several identical results, one line
    # The plan with each step's timing.
    plan = {line.split()[0]: line for line in files["plan.txt"].splitlines() if line[:1] not in (" ", "")}
    assert "failed: service db: not ready after 600ms" in plan["ready:db-1"]
    assert plan["release:api-1"].endswith("not started")  # gated: started early, never released
    assert "done" in plan["ready:cache-1"]
    assert "plan for run f-1" in files["plan.txt"]
    events = [json.loads(line) for line in files["events.jsonl"].splitlines()]
    assert events[0]["kind"] == "plan" and any(e["phase"] == "failed" and e["service"] == "db" for e in events)
    inspect = json.loads(files["services/envkit-f-1-db-1/inspect.json"])
    assert inspect["status"] == "running" and inspect["exit_code"] is None
    assert ["POSTGRES_PASSWORD", "****"] in inspect["blueprint_service"]["environment"]
    for name, content in files.items():  # no secret anywhere, in any file
        assert "s3cr/et@x" not in content and "hunter22" not in content, name
    assert stat.S_IMODE((bundle / "SUMMARY.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700


def test_an_exited_service_and_its_exit_code(shop: Blueprint, fake: FakeBackend, tmp_path: Path) -> None:
    fake.exit_codes["db"] = 3
    with pytest.raises(ServiceFailed):
        api.up(shop, name="f-2", backend=fake, artifacts=tmp_path)
    files = every_file(tmp_path / "f-2")
    assert "culprit: service db — exited with code 3 before it was ready" in files["SUMMARY.txt"]
    assert "container envkit-f-2-db-1: exited, exit code 3" in files["SUMMARY.txt"]
    assert "envkit-f-2-db-1" in files["services.txt"] and "exit code 3" in files["services.txt"]
    assert json.loads(files["services/envkit-f-2-db-1/inspect.json"])["exit_code"] == 3


def test_without_artifacts_no_bundle_is_written(shop: Blueprint, fake: FakeBackend, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake.exit_codes["db"] = 3
    with pytest.raises(ServiceFailed):
        api.up(shop, name="f-3", backend=fake)
    assert [p.name for p in tmp_path.iterdir()] == ["bp"]  # the blueprint only


def test_collect_on_a_live_run(shop: Blueprint, fake: FakeBackend, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with api.up(shop, name="l-1", backend=fake) as env:
        path = env.collect(tmp_path / "now", reason="looking around")
        files = every_file(path)
        assert files["SUMMARY.txt"].startswith("envkit: run l-1, collected ")
        assert "looking around" in files["SUMMARY.txt"].splitlines()[0]
        assert "no service is at fault: every service is up and ready" in files["SUMMARY.txt"]
        assert "plan.txt" in files and "events.jsonl" in files  # this process brought it up: its history too
        assert "now: exec pg_isready" in files["probes.txt"]  # and each probe, checked right now
        # The same from the command line, on a handle that knows nothing of how the run came up.
        fake.exec_results["db"] = ExecResult(1, "shutting down")
        assert main(["collect", "l-1", str(tmp_path / "cli")], backend=fake) == 0
        assert f"wrote {tmp_path / 'cli' / 'SUMMARY.txt'}" in capsys.readouterr().out
        cli = every_file(tmp_path / "cli")
        assert "culprit: service db — not ready: now: exec pg_isready: exit 1: shutting down" in cli["SUMMARY.txt"]
        assert "plan.txt" not in cli
        assert all("s3cr/et@x" not in text for text in cli.values())  # masked: the blueprint is found again
    assert main(["collect", "l-1", str(tmp_path / "gone")], backend=fake) == 7


def test_up_artifacts_writes_a_bundle_of_a_good_run_too(shop: Blueprint, fake: FakeBackend, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "blueprint.yaml").write_text(BLUEPRINT.replace("\n    ", "\n"))
    assert main(["up", str(folder), "--name", "g-1", "--artifacts", str(tmp_path / "art")], backend=fake) == 0
    assert f"forensics bundle: {tmp_path / 'art' / 'g-1'}" in capsys.readouterr().err
    assert (tmp_path / "art" / "g-1" / "SUMMARY.txt").exists()
    labels = fake.list_resources({L.RUN: "g-1"})[0].labels
    assert labels[L.LIFETIME] == "detached" and labels[L.EXPIRES_AT]  # `envkit up`: nobody's, 4h by default
    assert main(["down", "g-1"], backend=fake) == 0
