"""Helpers for the benchmark tests: the benchmark module itself, and the Compose binary it finds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench.py"


@pytest.fixture(scope="session")
def bench_module() -> ModuleType:
    """benchmarks/bench.py loaded by path (tests/benchmarks would shadow a package named `benchmarks`)."""
    spec = importlib.util.spec_from_file_location("envkit_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def compose_binary(bench_module: ModuleType) -> Path:
    try:
        found: Path = bench_module.find_compose()
    except bench_module.ToolMissing as exc:
        pytest.skip(f"Docker Compose v5 is not installed: {exc}")
    return found
