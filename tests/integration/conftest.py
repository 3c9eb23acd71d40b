"""Integration tests drive the real Docker engine (`bash scripts/test.sh` starts one when needed).

The session ends by checking that no envkit container, network or volume is left on the engine.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends.base import BuildSpec
from envkit.errors import EngineUnavailable

ROOT = Path(__file__).resolve().parents[2]
BLUEPRINTS = ROOT / "blueprints"
TEST_BLUEPRINTS = ROOT / "tests" / "blueprints" / "good"


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    try:
        engine = connect()
    except EngineUnavailable as exc:
        pytest.fail(f"integration tests need a Docker engine: {exc}")
    yield engine
    engine.close()


def build_small_image(backend: Backend, folder: Path, dockerfile: str) -> str:
    """An image built from ``dockerfile`` (``FROM debian:bookworm-slim``), tagged by its content, so
    that it is built once per engine and reused; images carry no run label and are kept."""
    digest = hashlib.sha256(dockerfile.encode()).hexdigest()[:16]
    tag = f"envkit-test/small:{digest}"
    if not backend.image_exists(tag):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        backend.build_image(BuildSpec(tag, folder, "Dockerfile", (), None, ((L.CONTEXT_HASH, digest),)),
                            lambda line: None)
    return tag


def resources_of(backend: Backend, run_id: str) -> list[str]:
    return [f"{r.kind} {r.name}" for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id})]


def envkit_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
               check: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("envkit")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"envkit {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
