"""Seed results in a forensics bundle, on the in-memory engine: seeds.txt has every step (index, kind, file,
start, duration, exit code, output tail, error; "not run" after the failure) and SUMMARY.txt names the
failed step first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api
from envkit.backends.base import ExecResult
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import SeedFailed

BLUEPRINT = """
    name: shop
    services:
      db:
        image: postgres:16
        seed:
          - exec: [sh, -c, "echo schema made"]
          - exec: {command: [sh, -c, "load orders"], stdin: seed/orders.csv}
          - exec: [sh, -c, "never reached"]
      api:
        image: python:3
        depends_on: [db]
"""


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    plain = fake.exec

    def exec_(container_id: str, command: tuple[str, ...], user: str | None = None,
              timeout: float | None = None) -> ExecResult:
        if "echo schema made" in command:
            return ExecResult(0, "CREATE TABLE\nschema made\n")
        if any("load orders" in part for part in command):
            return ExecResult(3, "loading 12 rows\nERROR: duplicate key value violates unique constraint\n")
        return plain(container_id, command, user, timeout=timeout) if timeout else plain(container_id, command, user)

    monkeypatch.setattr(fake, "exec", exec_)
    return fake


def test_a_failed_seed_step_is_in_seeds_txt_and_first_in_the_summary(load_text: Callable[..., Blueprint],
                                                                   fake: FakeBackend, tmp_path: Path) -> None:
    bp = load_text(BLUEPRINT, {"seed/orders.csv": "1,2\n"})
    with pytest.raises(SeedFailed):
        api.up(bp, name="sd-1", backend=fake, artifacts=tmp_path)
    seeds = (tmp_path / "sd-1" / "seeds.txt").read_text().splitlines()
    assert seeds[2] == "db:"
    first, second, third = (line for line in seeds if line.startswith("  ") and not line.startswith("      |"))
    assert first.startswith("  1/3 exec sh -c echo schema made") and first.endswith("exit 0     ok")
    assert "+" in first and "s  exit 0" in first  # when it began (from the plan's start) and how long it took
    assert second.startswith("  2/3 exec sh -c load orders < orders.csv") and second.endswith(
        "exit 3     FAILED: exited with code 3")
    assert "      | ERROR: duplicate key value violates unique constraint" in seeds
    assert third.startswith("  3/3 exec sh -c never reached") and third.endswith("not run")
    summary = (tmp_path / "sd-1" / "SUMMARY.txt").read_text().splitlines()
    assert summary[2] == ("culprit: service db — seed step 2/3 (exec sh -c load orders < orders.csv) failed: "
                          "exited with code 3")
    assert summary[3].startswith("  seed step 2/3 exec sh -c load orders < orders.csv: failed after ")
    assert summary[3].endswith("s (exit 3): exited with code 3")
    assert summary[4:7] == ["  output of the step:", "    | loading 12 rows",
                            "    | ERROR: duplicate key value violates unique constraint"]


def test_a_run_without_seeds_has_no_seeds_txt(load_text: Callable[..., Blueprint], fake: FakeBackend,
                                              tmp_path: Path) -> None:
    bp = load_text("name: plain\nservices:\n  db: {image: postgres:16}\n")
    with api.up(bp, name="sd-2", backend=fake) as env:
        assert not (env.collect(tmp_path / "b") / "seeds.txt").exists()
