"""pytest-xdist: one environment per worker by default; one for all workers with --envkit-shared."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import envkit

from .conftest import HELLO, Inner

SLEEPY = """
import time
import pytest

@pytest.mark.parametrize("n", range(3))
def test_sleepy(envkit_env, note, n):
    note(envkit_env)
    time.sleep(0.3)
"""


def test_each_worker_gets_its_own_environment(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a=SLEEPY, test_b=SLEEPY)
    inner.run("-n", "2").assert_outcomes(passed=6)
    records = inner.records()
    by_worker: dict[str, set[str]] = {}
    for r in records:
        by_worker.setdefault(r["worker"], set()).add(r["run"])
    assert sorted(by_worker) == ["gw0", "gw1"], by_worker
    assert all(len(runs) == 1 for runs in by_worker.values())
    assert by_worker["gw0"] != by_worker["gw1"]


def test_shared_mode_one_environment_removed_after_the_last_worker(inner: Inner) -> None:
    # The fast group's worker finishes first; the slow test then waits until the shared state says so and
    # checks that the environment still answers: a finishing worker must not remove it under the others.
    inner.pytester.makepyfile(test_shared="""
        import json, os, tempfile, time
        from pathlib import Path
        import pytest

        @pytest.mark.xdist_group("fast")
        @pytest.mark.parametrize("n", range(3))
        def test_fast(envkit_env, note, n):
            note(envkit_env)

        @pytest.mark.xdist_group("slow")
        def test_slow(envkit_env, note):
            note(envkit_env, phase="start")
            state = Path(tempfile.gettempdir()) / f"envkit-shared-{os.environ['PYTEST_XDIST_TESTRUNUID']}" / "state.json"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = json.loads(state.read_text())["done"] if state.exists() else []
                if done:
                    break
                time.sleep(0.1)
            note(envkit_env, phase="after the other worker finished", done=done)
    """)
    testrunuid = uuid.uuid4().hex
    result = inner.run("-n", "2", "--dist=loadgroup", "--envkit-shared", f"--testrunuid={testrunuid}", "-v")
    result.assert_outcomes(passed=4)
    records = inner.records()
    assert len({r["run"] for r in records}) == 1, records
    assert {r["worker"] for r in records} == {"gw0", "gw1"}
    assert all(r["alive"] for r in records), records
    last = [r for r in records if r.get("phase") == "after the other worker finished"]
    assert len(last) == 1 and len(last[0]["done"]) == 1 and last[0]["done"] != [last[0]["worker"]], last
    result.stdout.fnmatch_lines(["*, shared in *s, removed by the last worker (*)"])
    assert not (Path(tempfile.gettempdir()) / f"envkit-shared-{testrunuid}").exists()


def test_a_reset_of_a_reused_run_under_several_workers_is_refused(inner: Inner) -> None:
    # Every worker attaches to the one run: a reset would restart it under the other worker's tests.
    env = envkit.up(HELLO)
    try:
        inner.pytester.makepyfile(test_a="""
import pytest

@pytest.mark.envkit_reset("greeter")
def test_marked(envkit_env):
    pass

def test_plain(envkit_env):
    pass
""")
        result = inner.run("-n", "2", f"--envkit-reuse={env.run_id}", blueprint=None)
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines([f"*envkit_reset of --envkit-reuse={env.run_id} under 2 xdist workers: every "
                                     "pytest-xdist worker attaches to that one run*"])
        inner.pytester.makeini("[pytest]\nenvkit_reset = *\n")
        result = inner.run("-n", "2", f"--envkit-reuse={env.run_id}", blueprint=None)
        assert result.ret == 4  # pytest's usage error, at start-up
        result.stderr.fnmatch_lines(["*envkit_reset (ini) with --envkit-reuse=* and 2 xdist workers*"])
        assert inner.resources([env.run_id]), "the reused run is left running"
    finally:
        env.down()
