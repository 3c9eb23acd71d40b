"""The commands that work on a live run, and `envkit images`, on the fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.backends.fake import FakeBackend
from envkit.cli import main

from .conftest import WriteBlueprint

BLUEPRINT = """
    name: demo
    services:
      db: {image: "pg:1", ports: [5432]}
      api: {build: ./app, ports: ["18080:8080"], depends_on: [db]}
"""


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"pg:1"})


@pytest.fixture
def run(write_blueprint: WriteBlueprint, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = write_blueprint(BLUEPRINT, {"app/Dockerfile": "FROM x\n", "app/main.py": "v1\n"})
    assert main(["up", str(folder), "--name", "c1"], backend=fake) == 0
    capsys.readouterr()
    return folder


def test_restart_stop_start(run: Path, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["restart", "c1", "--dry-run"], backend=fake) == 0
    text = capsys.readouterr().out
    assert text.startswith("restart in run c1 (services: api, db)")
    assert "stop:db-1                    stop     envkit-c1-db-1  after stop:api-1" in text
    assert not [c for c in fake.calls if c[0] == "stop_container"]
    assert main(["restart", "c1", "-t", "0"], backend=fake) == 0
    captured = capsys.readouterr()
    assert "host port moved" not in captured.err  # chosen at create: a replica keeps its host ports
    assert "127.0.0.1:18080->8080/tcp" in captured.out  # pinned: kept
    assert main(["stop", "c1", "api"], backend=fake) == 0
    assert "exited" in capsys.readouterr().out
    assert main(["start", "c1", "api"], backend=fake) == 0
    assert "running" in capsys.readouterr().out
    assert main(["restart", "c1", "nope"], backend=fake) == 2
    assert "error: restart: run c1 has no service nope (services: api, db)" in capsys.readouterr().err
    assert main(["restart", "c0"], backend=fake) == 7


def test_rebuild(run: Path, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rebuild", "c1"], backend=fake) == 0
    assert "nothing to rebuild" in capsys.readouterr().out
    (run / "app" / "main.py").write_text("v2\n")
    assert main(["rebuild", "c1", "--dry-run"], backend=fake) == 0
    assert "image:envkit/demo-app:" in capsys.readouterr().out
    assert main(["rebuild", "c1"], backend=fake) == 0
    captured = capsys.readouterr()
    assert "building envkit/demo-app:" in captured.err and "127.0.0.1:18080->8080/tcp" in captured.out
    assert main(["rebuild", "c1", "--blueprint", str(run / "missing.yaml")], backend=fake) == 3
    assert "missing.yaml: no such file or folder" in capsys.readouterr().err


def test_logs(run: Path, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    fake.emit("envkit-c1-db-1", "db up")
    fake.emit("envkit-c1-api-1", "api up")
    assert main(["logs", "c1"], backend=fake) == 0
    assert capsys.readouterr().out == "db  | db up\napi | api up\n"
    assert main(["logs", "c1", "api", "-t"], backend=fake) == 0
    out = capsys.readouterr().out
    assert out.endswith("Z api up\n") and " | " not in out  # one source: no prefix
    assert main(["logs", "c1", "--since", "1h", "--tail", "1", "--no-prefix"], backend=fake) == 0
    assert capsys.readouterr().out == "db up\napi up\n"
    assert main(["logs", "c1", "-f"], backend=fake) == 0  # the fake's streams end at once
    assert capsys.readouterr().out == "db  | db up\napi | api up\n"
    assert main(["logs", "c1", "--since", "soon"], backend=fake) == 2


def test_images(run: Path, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "ls"], backend=fake) == 0
    assert "envkit/demo-app:" in capsys.readouterr().out
    assert main(["images", "prune", str(run), "--all", "--dry-run"], backend=fake) == 0
    assert "would remove 0 images (0 B at most); kept 1 (1 in use)" in capsys.readouterr().out
    assert main(["down", "c1"], backend=fake) == 0
    assert main(["images", "prune", str(run), "--all"], backend=fake) == 0
    assert "removed envkit/demo-app:" in capsys.readouterr().out
    assert [t for t in fake.images if t.startswith("envkit/")] == []
