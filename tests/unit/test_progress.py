"""Progress on stderr: redrawn in place in a pseudo-terminal, one line per event when piped, nothing when quiet."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from envkit.cli.progress import LiveProgress, Tracker
from envkit.events import Event

ROOT = Path(__file__).resolve().parents[2]
DEMO = Path(__file__).with_name("progress_demo.py")
BLUEPRINT = """
name: demo
services:
  db:
    build: ./img
    ports: [5432]
    ready: {exec: [pg_isready], timeout: 20s}
  migrate:
    image: app:1
    kind: job
    depends_on: [db]
  web:
    image: app:1
    depends_on: [migrate]
"""


@pytest.fixture
def bp(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT)
    return tmp_path


def in_pty(args: list[str], env: dict[str, str]) -> str:
    """What a terminal would receive from the command (stdout and stderr), as text."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.execve(sys.executable, [sys.executable, *args], env)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "CI")}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **extra}


def test_live_progress_in_a_pseudo_terminal(bp: Path) -> None:
    out = in_pty([str(DEMO), str(bp), "--name", "p1"], child_env())
    assert "\x1b[1A" in out and "\x1b[2K" in out  # lines redrawn in place
    assert "building" in out and "Step 2/3 : RUN apt-get install -y postgresql" in out  # the build's last line
    assert "Step 3/3 : CMD postgres" in out and "\x1b[1mStep 3/3" not in out  # its own escapes are dropped
    assert "waiting" in out and "exit 1: no server yet (try 2)" in out  # what the probe last saw
    assert "completed" in out and "\x1b[32m" in out  # colours on a terminal
    tail = out[out.rindex("SERVICE"):]  # the summary table at the end
    assert "ADDRESS" in tail and "READY" in tail
    rows = {line.split()[0]: line for line in tail.splitlines()[1:4]}
    assert set(rows) == {"db", "migrate", "web"}
    assert "127.0.0.1:49153 → 5432/tcp" in rows["db"] and rows["db"].rstrip().endswith("s")
    assert "(completed)" in rows["migrate"]
    assert "run p1 is ready" in tail


def test_no_color_in_a_pseudo_terminal(bp: Path) -> None:
    out = in_pty([str(DEMO), str(bp), "--name", "p2"], child_env(NO_COLOR="1"))
    assert "\x1b[1A" in out  # still redrawn: NO_COLOR is about colours only
    assert "\x1b[32m" not in out and "\x1b[31m" not in out and "\x1b[36m" not in out


def test_plain_lines_when_not_a_terminal(bp: Path) -> None:
    done = subprocess.run([sys.executable, str(DEMO), str(bp), "--name", "p3"], capture_output=True, text=True,
                          env=child_env(), timeout=60, check=True)
    err = done.stderr
    assert "\x1b[" not in err  # no cursor movement, no colour in a log
    lines = err.splitlines()
    assert re.fullmatch(r"run p3: \d+ steps", lines[0])
    assert "  … building envkit/demo-img:" in err and "  ✓ db ready in" in err and "  ✓ migrate completed" in err
    order = [next(i for i, x in enumerate(lines) if what in x) for what in ("db ready", "migrate completed")]
    assert order == sorted(order)
    assert "SERVICE" in err and "127.0.0.1:49153 → 5432/tcp" in err  # the summary in the log too
    assert "run p3 is ready" in done.stdout


def test_quiet_prints_nothing_but_the_results(bp: Path) -> None:
    done = subprocess.run([sys.executable, str(DEMO), str(bp), "--name", "p4", "-q", "--json"], capture_output=True,
                          text=True, env=child_env(), timeout=60, check=True)
    assert done.stderr == "" and '"run": "p4"' in done.stdout


def events(*items: tuple[str, str, str, str]) -> list[Event]:
    """(phase, action, service, detail) → step events, 0.5 s apart."""
    return [Event("step", "r", "", phase=phase, action=action, services=(svc,), detail=detail, at=100 + i / 2)  # type: ignore[arg-type]
            for i, (phase, action, svc, detail) in enumerate(items)]


def test_each_service_shows_what_it_does_now_including_kinds_of_steps_added_later() -> None:
    t = Tracker(lambda e: None, shows_steps=True)
    for e in events(("start", "create", "db", ""), ("start", "start", "db", ""), ("start", "ready", "db", ""),
                    ("progress", "ready", "db", "tcp 5432: Connection refused"), ("done", "ready", "db", ""),
                    ("start", "seed", "db", ""), ("start", "warm-cache", "db", "")):
        t(e)
    assert (t.rows["db"].state, t.rows["db"].usable) == ("warm-cache", False)  # an action it does not know: its name
    t(events(("done", "usable", "db", ""))[0])
    assert (t.rows["db"].state, t.rows["db"].usable) == ("ready", True)
    t(events(("start", "ready", "api", ""), ("failed", "ready", "api", "exited with code 3"))[1])
    assert (t.rows["api"].state, t.rows["api"].detail) == ("failed", "exited with code 3") and t.failed


def test_a_failure_leaves_the_last_picture_on_screen() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, no_color=True)
    with pytest.raises(RuntimeError), LiveProgress(console) as view:
        for e in events(("start", "ready", "db", ""), ("progress", "ready", "db", "GET /health: status 503"),
                        ("failed", "ready", "db", "not ready after 3s")):
            view(e)
        raise RuntimeError("up failed")
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue().split("\x1b[?25h")[-1])  # after the live area
    assert "✗ db" in final and "failed" in final and "not ready after 3s" in final


def test_plain_mode_shows_the_events_through_the_line_renderer() -> None:
    seen: list[Event] = []
    t = Tracker(seen.append, shows_steps=False)
    batch = events(("start", "build", "db", ""), ("done", "build", "db", ""))
    for e in batch:
        t(e)
    assert seen == batch and t.rows["db"].state == "built"

