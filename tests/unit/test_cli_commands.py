"""The command line on the fake engine: ``main(argv, backend=...)`` runs every command against it, so
exit codes, what goes to stdout / stderr and the teardown of ``envkit run`` are checked without Docker."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends.fake import FakeBackend
from envkit.cli import main

BLUEPRINT = """
name: demo
services:
  web:
    image: nginx:1
outputs:
  GREETING: hello
"""


@pytest.fixture
def bp(tmp_path: Path) -> str:
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT)
    return str(tmp_path)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"nginx:1"})


def left(fake: FakeBackend, run_id: str) -> list[str]:
    return sorted(f"{r.kind} {r.name}" for r in fake.list_resources({L.MANAGED: "true", L.RUN: run_id}))


def test_validate_does_not_touch_the_engine(bp: str, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", bp], backend=fake) == 0
    assert "ok — blueprint 'demo', 1 services" in capsys.readouterr().out
    assert fake.calls == []


def test_up_ls_outputs_down(bp: str, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", bp, "--name", "c1"], backend=fake) == 0
    out = capsys.readouterr().out
    assert "run c1 is ready" in out and "GREETING" in out and "envkit down c1" in out
    assert left(fake, "c1") == ["container envkit-c1-web-1", "network envkit-c1-default"]  # handed over, not removed
    assert main(["ls"], backend=fake) == 0
    assert "c1" in capsys.readouterr().out
    assert main(["outputs", "c1"], backend=fake) == 0
    assert capsys.readouterr().out == "GREETING=hello\n"
    assert main(["down", "c1"], backend=fake) == 0
    assert "removed 1 containers, 1 networks, 0 volumes" in capsys.readouterr().out
    assert left(fake, "c1") == []
    assert main(["down", "c1"], backend=fake) == 0  # already gone: nothing to do, as `compose down`
    assert "no run c1: nothing to remove" in capsys.readouterr().err
    assert main(["down", "--strict", "c1"], backend=fake) == 7
    assert "error: no run 'c1'" in capsys.readouterr().err


def test_run_hands_the_outputs_over_exits_with_the_code_and_tears_down(bp: str, fake: FakeBackend,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    check = "import os, sys; sys.exit(3 if os.environ['GREETING'] == 'hello' and os.environ['ENVKIT_RUN'] == 'c2' else 1)"
    assert main(["run", bp, "--name", "c2", "--", sys.executable, "-c", check], backend=fake) == 3
    err = capsys.readouterr().err
    assert "run c2 is ready; running:" in err and "run c2 removed" in err
    assert left(fake, "c2") == []


def test_run_stops_its_control_endpoint_once_the_command_has_ended(bp: str, fake: FakeBackend, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # What the command left running must not reset the run while envkit collects its forensics (the
    # services as the failing command left them) or tears it down.
    from envkit.cli import run_cmd

    where = tmp_path / "url"
    reached: list[object] = []

    def collect(env: object, artifacts: Path, why: str) -> None:
        try:
            with urllib.request.urlopen(f"{where.read_text()}/run", timeout=5) as answer:
                reached.append(answer.status)
        except OSError as exc:  # refused: the endpoint has stopped
            reached.append(type(exc).__name__)

    monkeypatch.setattr(run_cmd, "_collect", collect)
    write = f"import os, sys; open({str(where)!r}, 'w').write(os.environ['ENVKIT_CONTROL_URL']); sys.exit(1)"
    assert main(["run", bp, "--name", "c5", "--artifacts", str(tmp_path / "forensics"), "--",
                 sys.executable, "-c", write], backend=fake) == 1
    assert reached and reached != [200]
    assert left(fake, "c5") == []


class Interrupting(FakeBackend):
    """An engine whose container removals a Ctrl-C cuts short, ``times`` times."""

    def __init__(self, times: int) -> None:
        super().__init__(images={"nginx:1"})
        self.times = times

    def remove_container(self, container_id: str, grace: float) -> None:
        if self.times > 0:
            self.times -= 1
            raise KeyboardInterrupt
        super().remove_container(container_id, grace)


def test_run_starts_the_teardown_again_after_a_second_ctrl_c(bp: str, capsys: pytest.CaptureFixture[str]) -> None:
    fake = Interrupting(times=1)
    assert main(["run", bp, "--name", "c3", "--", sys.executable, "-c", "pass"], backend=fake) == 0
    assert "run c3 removed" in capsys.readouterr().err
    assert left(fake, "c3") == []


def test_run_says_the_run_may_be_left_when_every_teardown_was_cut_short(bp: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake = Interrupting(times=99)
    assert main(["run", bp, "--name", "c4", "--", sys.executable, "-c", "pass"], backend=fake) == 130
    err = capsys.readouterr().err
    assert "run c4 removed" not in err
    assert "teardown interrupted: run c4 may be left; remove it with: envkit down c4" in err
    assert left(fake, "c4")


def test_an_unknown_engine_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "nosuch", "ls"]) == 2
    assert "error: --engine: unknown engine 'nosuch' (known engines: docker" in capsys.readouterr().err
    monkeypatch.setenv("ENVKIT_ENGINE", "nosuch")
    assert main(["ls"]) == 2
    assert "error: ENVKIT_ENGINE: unknown engine 'nosuch'" in capsys.readouterr().err


def test_plan_offline_asks_no_engine(bp: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "nosuch", "plan", "--offline", bp, "--name", "p1"]) == 0
    assert "envkit-p1-web-1" in capsys.readouterr().out
