"""Tests of the pytest plugin: inner pytest sessions (pytester, in subprocesses) against the real engine.

Inner tests record what they saw, one JSON line per test, through the ``note`` fixture of the inner
conftest; ``Inner.runs()`` reads the run ids back. Every test ends by checking that none of the runs its
inner sessions saw is left on the engine (and removes any it finds, so one failure does not leak into
the next test).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from envkit import labels as L
from envkit.backends import Backend, connect

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "blueprints" / "hello"
SHOP = ROOT / "blueprints" / "shop"
ENVKIT = Path(sys.executable).with_name("envkit")

# The inner sessions' conftest: `note(env)` records the test, its run, its worker and whether the run answers.
INNER_CONFTEST = '''
import json, os, time, urllib.request
from pathlib import Path

import pytest

RECORD = Path(__file__).with_name("runs.jsonl")


def answers(env):
    url = env.outputs.get("HELLO_URL") or env.outputs.get("GREETER_URL")
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        return response.status == 200


@pytest.fixture
def note(request):
    def write(env, **extra):
        line = {"test": request.node.nodeid, "run": env.run_id, "services": list(env.services),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", ""), "alive": answers(env), "at": time.time(),
                **extra}
        with RECORD.open("a") as fh:
            fh.write(json.dumps(line) + "\\n")
    return write
'''


class Inner:
    """Runs inner pytest sessions in pytester's folder and reads back what their tests recorded."""

    def __init__(self, pytester: pytest.Pytester, backend: Backend) -> None:
        self.pytester = pytester
        self.backend = backend
        self.extra_runs: set[str] = set()
        pytester.makeconftest(INNER_CONFTEST)

    def args(self, *args: str, blueprint: Path | None = HELLO) -> list[str]:
        # `--opt=value` keeps pytest from taking the blueprint's folder for a test path when choosing rootdir.
        return ["-p", "no:cacheprovider", "-W", "error", *([f"--envkit-blueprint={blueprint}"] if blueprint else []),
                *args]

    def run(self, *args: str, blueprint: Path | None = HELLO, timeout: float = 120) -> pytest.RunResult:
        result = self.pytester.runpytest_subprocess(*self.args(*args, blueprint=blueprint), timeout=timeout)
        self.extra_runs |= set(re.findall(r"envkit down (\S+)", result.stdout.str()))
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """An inner session of its own process group, as a terminal's Ctrl-C would reach it."""
        return subprocess.Popen([sys.executable, "-m", "pytest", *self.args(*args)], cwd=self.pytester.path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def records(self) -> list[dict[str, Any]]:
        path = self.pytester.path / "runs.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def runs(self) -> dict[str, str]:
        """test node id -> run id."""
        return {r["test"]: r["run"] for r in self.records()}

    def resources(self, run_ids: Sequence[str]) -> list[str]:
        return [f"{r.kind} {r.name}" for run in run_ids
                for r in self.backend.list_resources({L.MANAGED: "true", L.RUN: run})]

    def all_runs(self) -> set[str]:
        return {r["run"] for r in self.records()} | self.extra_runs


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    engine = connect()
    yield engine
    engine.close()


@pytest.fixture
def inner(pytester: pytest.Pytester, backend: Backend) -> Iterator[Inner]:
    runner = Inner(pytester, backend)
    yield runner
    runs = sorted(runner.all_runs())
    left = runner.resources(runs)
    if left:  # clean up first, so the next test starts from a clean engine; then fail this one
        for run in runs:
            subprocess.run([str(ENVKIT), "down", run], capture_output=True, timeout=120, check=False)
    assert not left, f"left behind by runs {runs}: {left}"
