"""``envkit init``: every menu choice writes a blueprint that validates (and passes the schema); files are never
overwritten unasked; the app builds from your Dockerfile when there is one."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from envkit.blueprint import load
from envkit.blueprint.schema import schema
from envkit.cli import main
from envkit.starter import CHOICES


@pytest.mark.parametrize("choice", list(CHOICES))
def test_each_choice_validates_alone(choice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "env"), "--with", choice]) == 0
    bp = load(tmp_path / "env", {})
    service = CHOICES[choice].service
    assert list(bp.services) == [service] and bp.outputs
    build = bp.services[service].build
    assert build is not None and (build.context / "Dockerfile").read_text().count("FROM debian:bookworm-slim") == 1
    text = (tmp_path / "env" / "blueprint.yaml").read_text()
    jsonschema.validate(yaml.safe_load(text), schema())
    assert text.startswith("# yaml-language-server: $schema=.envkit/blueprint.schema.json")
    assert (tmp_path / "env" / ".envkit" / "blueprint.schema.json").is_file()  # what the modeline names
    assert f"next: envkit up {tmp_path / 'env'}" in capsys.readouterr().err


def test_everything_together_and_the_app_reaches_each_service(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path), "--with", "app,postgres,mysql,redis,rabbitmq,stub", "--name", "all"]) == 0
    bp = load(tmp_path, {})
    assert list(bp.services)[-1] == "app" and bp.name == "all"
    app = bp.services["app"]
    assert {d.service for d in app.depends_on} == {"db", "mysql", "cache", "queue", "stub"}
    env = dict(app.environment)
    assert env["DATABASE_URL"] == "postgresql://app:app@db:5432/app" and env["REDIS_URL"] == "redis://cache:6379/0"
    assert dict(bp.outputs)["APP_URL"] == "http://${services.app.host}:${services.app.ports.8000}"


def test_your_own_dockerfile_is_used_for_the_app(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    assert main(["init", str(tmp_path), "--with", "app,redis"]) == 0
    bp = load(tmp_path, {})
    assert bp.services["app"].build is not None and bp.services["app"].build.context == tmp_path.resolve()
    assert not (tmp_path / "images" / "app").exists()
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    assert main(["init", str(tmp_path / "env"), "--with", "app", "--app", str(tmp_path / "svc")]) == 0
    assert "build: ../svc" in (tmp_path / "env" / "blueprint.yaml").read_text()
    assert main(["init", str(tmp_path / "env2"), "--with", "app", "--app", str(tmp_path / "images")]) == 2


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path), "--with", "postgres,kafka"]) == 2
    assert "unknown kafka (choose from: postgres, mysql, redis, rabbitmq, stub, app)" in capsys.readouterr().err
    assert main(["init", str(tmp_path), "--with", "redis"]) == 0
    before = (tmp_path / "blueprint.yaml").read_text()
    assert main(["init", str(tmp_path), "--with", "postgres"]) == 2
    assert "would overwrite blueprint.yaml (pass --force" in capsys.readouterr().err
    assert (tmp_path / "blueprint.yaml").read_text() == before
    assert main(["init", str(tmp_path), "--with", "postgres", "--force"]) == 0
    assert main(["init", str(tmp_path / "x"), "--with", "redis", "--name", "Bad Name"]) == 2


def test_without_choices_and_no_terminal_it_asks_for_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 2  # pytest's stdin is not a terminal
    assert "name the services with --with" in capsys.readouterr().err


def test_the_menu_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from envkit.cli import cli, init_cmd

    monkeypatch.setattr(init_cmd, "interactive", lambda: True)
    result = CliRunner().invoke(cli, ["init", str(tmp_path)], input="1, redis 6\n")
    assert result.exit_code == 0, result.output
    assert set(load(tmp_path, {}).services) == {"db", "cache", "app"}
