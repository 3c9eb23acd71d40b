"""The CLI reference page is generated from the commands; every --help has an example; shell completion
completes run ids (from the engine's labels) and service names (of the run, or of the blueprint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from envkit.backends.fake import FakeBackend
from envkit.cli import cli, main, reference

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "blueprints" / "shop"


def test_the_reference_page_is_current() -> None:
    text = reference.DOC.read_text(encoding="utf-8")
    assert text == reference.render(cli), "docs/cli-reference.md is stale: run python -m envkit.cli.reference --write"
    for name in cli.commands:
        assert f"\n## envkit {name}\n" in text


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_help_has_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    example = out[out.index("Example:"):]
    assert "envkit " in example.splitlines()[1], out


@pytest.fixture
def complete(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., list[str]]:
    """What the shell would offer after ``line`` (bash's protocol: ``type,value`` per line)."""
    def run(line: str, fake: FakeBackend | None = None) -> list[str]:
        monkeypatch.setenv("_ENVKIT_COMPLETE", "bash_complete")
        monkeypatch.setenv("COMP_WORDS", line)
        monkeypatch.setenv("COMP_CWORD", str(len(line.split(" ")) - 1))
        capsys.readouterr()
        main([], backend=fake or FakeBackend())
        monkeypatch.delenv("_ENVKIT_COMPLETE")
        return [item.split(",", 1)[1] for item in capsys.readouterr().out.split()]

    return run


@pytest.fixture
def live(tmp_path: Path) -> FakeBackend:
    (tmp_path / "blueprint.yaml").write_text("name: demo\nservices:\n  web: {image: 'nginx:1'}\n  db: {image: 'pg:1'}\n")
    fake = FakeBackend(images={"nginx:1", "pg:1"})
    assert main(["up", str(tmp_path), "--name", "demo-1", "-q"], backend=fake) == 0
    assert main(["up", str(tmp_path), "--name", "other-2", "-q"], backend=fake) == 0
    return fake


def test_commands_and_options_complete(complete: Callable[..., list[str]]) -> None:
    assert {"graph", "import", "init", "schema", "completion", "up"} <= set(complete("envkit "))
    assert "--progress" in complete("envkit up x --pro")


def test_run_ids_and_their_services_complete(complete: Callable[..., list[str]], live: FakeBackend) -> None:
    assert complete("envkit down ", live) == ["demo-1", "other-2"]
    assert complete("envkit status de", live) == ["demo-1"]
    assert sorted(complete("envkit logs demo-1 ", live)) == ["db", "web"]
    assert complete("envkit exec demo-1 w", live) == ["web"]
    assert complete("envkit logs nosuchrun ", live) == []  # quietly nothing


def test_blueprint_services_complete_for_only(complete: Callable[..., list[str]]) -> None:
    assert sorted(complete(f"envkit up {SHOP} --only ")) == ["api", "cache", "db", "migrate", "payments",
                                                                          "worker"]
    assert complete(f"envkit graph {SHOP} --only w") == ["worker"]
    assert complete("envkit up /nonexistent --only ") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    assert "_ENVKIT_COMPLETE" in capsys.readouterr().out


def test_completion_needs_a_known_shell(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    assert main(["completion"]) == 2
    assert "envkit completion {bash|zsh|fish}" in capsys.readouterr().err
    monkeypatch.setenv("SHELL", "/usr/bin/zsh")
    assert main(["completion"]) == 0
