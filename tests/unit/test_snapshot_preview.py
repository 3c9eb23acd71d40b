"""`envkit plan` shows what `up` would do with snapshots: capture after seeding (key unknown offline or
before the images exist; the real key otherwise), or start from the snapshot the engine has."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from envkit import api
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.fake import FakeBackend
from envkit.backends.types import VolumeSpec
from envkit.blueprint import load
from envkit.snapshot_plan import UNKNOWN_KEY, image_ids

from .test_snapshots import write

PLAIN = """\
name: keyed
services:
  db:
    image: postgres:16
    ports: [5432]
    seed:
      - sql: {file: seed/one.sql}
  api:
    image: api:1
    depends_on: [db]
"""


def step_lines(text: str) -> dict[str, str]:
    """step id → its line and the cause line under it."""
    lines = text.splitlines()
    return {line.split()[0]: line + "\n" + (lines[i + 1] if i + 1 < len(lines) else "")
            for i, line in enumerate(lines) if line.startswith("  ") and not line.startswith("   ")}


def test_offline_plan_shows_the_capture_after_the_seeds(tmp_path: Path) -> None:
    steps = step_lines(api.plan(write(tmp_path / "p"), name="keyed-1").text())
    assert "after seed:db.1" in steps["snapshot:db"]
    assert f"capture snapshot {UNKNOWN_KEY} of the seeded state" in steps["snapshot:db"]
    assert "after snapshot:db" in steps["usable:db"]
    assert "snapshot:api" in steps  # `snapshot: {reset: restore}` in the blueprint


def test_the_flag_adds_or_removes_the_snapshot_steps(tmp_path: Path) -> None:
    folder = write(tmp_path / "f", PLAIN)
    assert "snapshot:db" not in api.plan(folder).text()
    assert "snapshot:db" in api.plan(folder, snapshot=True).text()
    assert "snapshot:" not in api.plan(write(tmp_path / "g"), snapshot=False).text()
    assert "snapshot:" not in api.plan(write(tmp_path / "h"), snapshot=True, seed=False).text()


def test_with_the_images_on_the_engine_the_plan_names_the_key_it_would_capture(tmp_path: Path) -> None:
    folder = write(tmp_path / "k", PLAIN)
    fake = FakeBackend(images={"postgres:16", "api:1"})
    bp = load(folder, {})
    key = S.service_keys(bp, image_ids(fake, bp, ("db",)), ["db"])["db"]
    steps = step_lines(api.plan(folder, backend=fake, snapshot=["db"]).text())
    assert f"capture snapshot {key[:16]} of the seeded state" in steps["snapshot:db"]
    assert all(call[0] in ("image_exists", "image_id", "list_resources") for call in fake.calls)  # nothing made


def test_a_snapshot_on_the_engine_is_planned_as_a_restore_without_seeds(tmp_path: Path) -> None:
    folder = write(tmp_path / "h", PLAIN)
    fake = FakeBackend(images={"postgres:16", "api:1"})
    bp = load(folder, {})
    key = S.service_keys(bp, image_ids(fake, bp, ("db",)), ["db"])["db"]
    snap = S.Snapshot(key, "db", "keyed", S.image_tag("db", key), (("/var/lib/postgresql/data", S.data_name(key, 1)),),
                      "restore", "2026-01-01T00:00:00Z")
    fake.images.add(snap.image)
    fake.create_volume(VolumeSpec(S.manifest_name(key), tuple(sorted(snap.labels().items()))))
    data = {**snap.labels(), L.ROLE: "snapshot-data"}
    fake.create_volume(VolumeSpec(S.data_name(key, 1), tuple(sorted(data.items()))))
    steps = step_lines(api.plan(folder, backend=fake, snapshot=["db"]).text())
    assert f"container from snapshot {key[:16]} (seeds skipped)" in steps["create:db-1"]
    assert f"/var/lib/postgresql/data from snapshot {key[:16]}" in steps["restore:db-1"]
    assert not any(s.startswith(("seed:db", "snapshot:db")) for s in steps)


def test_cli_plan_takes_the_snapshot_flag(tmp_path: Path) -> None:
    from envkit.cli.commands import cli

    folder = write(tmp_path / "c", PLAIN)
    result = CliRunner().invoke(cli, ["plan", "--offline", "--snapshot", str(folder)])
    assert result.exit_code == 0, result.output
    assert "snapshot:db" in result.output and UNKNOWN_KEY in result.output
