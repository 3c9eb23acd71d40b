"""examples/shop, the real suite, run the three ways its README gives."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest

from .conftest import ENVKIT, ROOT, Inner

EXAMPLE = "examples/shop"


@functools.cache  # collected once for the three ways (the folder does not change during the session)
def example_count() -> int:
    """How many tests examples/shop holds (collected, so a new example test needs no edit here)."""
    listed = subprocess.run([sys.executable, "-m", "pytest", EXAMPLE, "--collect-only", "-q", "-p", "no:envkit",
                             "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    count = sum(1 for line in listed.stdout.splitlines() if "::" in line)
    assert count >= 9, listed.stdout + listed.stderr
    return count


def run(*command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ENVKIT_RUN"}
    return subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_the_shop_suite_through_the_plugin(inner: Inner, xdist: tuple[str, ...]) -> None:
    result = run(sys.executable, "-m", "pytest", EXAMPLE, "-p", "no:cacheprovider", "-v", *xdist)
    runs = re.findall(r"^run (shop-\w+): .*, removed$", result.stdout, re.M)
    inner.extra_runs |= set(runs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{example_count()} passed" in result.stdout
    workers = set(re.findall(r"^\[(gw\d+)\] .* PASSED", result.stdout, re.M)) if xdist else {"main"}
    assert len(runs) == len(workers) >= 1, result.stdout  # one shop per worker that ran tests
    assert inner.resources(runs) == []


def test_the_shop_suite_under_envkit_run_with_the_plugin_disabled(inner: Inner) -> None:
    result = run(str(ENVKIT), "run", "blueprints/shop", "--",
                 sys.executable, "-m", "pytest", EXAMPLE, "-p", "no:envkit", "-p", "no:cacheprovider", "-q")
    runs = re.findall(r"run (shop-\w+) is ready", result.stderr)
    inner.extra_runs |= set(runs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{example_count()} passed" in result.stdout
    assert "warning" not in result.stdout.lower()
    assert len(runs) == 1
    assert inner.resources(runs) == []
