"""`envkit run BLUEPRINT -- pytest` on the real engine: the plugin uses the run `envkit run` made (no
second stack, no flag), even though the project's ini file names a blueprint; `envkit run` removes it."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ENVKIT, HELLO, Inner


def test_pytest_under_envkit_run_uses_that_run(inner: Inner) -> None:
    inner.pytester.makeini(f"[pytest]\nenvkit_blueprint = {HELLO}\n")
    inner.pytester.makepyfile(test_a="""
        import os

        def test_uses_the_outer_run(envkit_env, note):
            note(envkit_env)
            assert envkit_env.run_id == os.environ["ENVKIT_RUN"]
    """)
    run = f"pl-under-run-{os.getpid()}"
    result = subprocess.run([str(ENVKIT), "run", str(HELLO), "--name", run, "--", sys.executable, "-m", "pytest",
                             "-p", "no:cacheprovider", "-W", "error", "-v"],
                            cwd=inner.pytester.path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"envkit: using run {run} of `envkit run` (ENVKIT_RUN)" in result.stdout
    assert [r["run"] for r in inner.records()] == [run]  # one run: the outer one
    assert inner.records()[0]["alive"]
    assert f"run {run} removed" in result.stderr
