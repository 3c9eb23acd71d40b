"""The envkit_reset marker: a test's writes are undone after it, the environment stays up for the next."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from envkit import labels as L
from envkit import snapshots as S

from .conftest import Inner

STORE = """\
FROM debian:bookworm-slim
VOLUME /data
CMD ["sh", "-c", "[ -f /data/init ] || echo seeded > /data/init; trap 'exit 0' TERM; sleep infinity & wait"]
"""
BLUEPRINT = """\
name: marked
services:
  store:
    build: ./store
    snapshot: true
    environment: {TOKEN: "${TOKEN}"}
    ready: {exec: [test, -f, /data/init]}
"""
TESTS = """
import pytest

@pytest.mark.envkit_reset("store")
def test_a_writes(envkit_env):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "seeded"
    envkit_env.exec("store", ["sh", "-c", "echo dirty > /data/init"])

def test_b_sees_the_seeded_state(envkit_env):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "seeded"
    envkit_env.exec("store", ["sh", "-c", "echo dirty > /data/init"])  # not marked: not undone

def test_c_sees_the_unmarked_write(envkit_env):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "dirty"
"""


def _store(inner: Inner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store blueprint in the inner session's folder, under a snapshot key of this test's own."""
    monkeypatch.setenv("TOKEN", secrets.token_hex(6))
    folder = inner.pytester.path / "bp"
    (folder / "store").mkdir(parents=True)
    (folder / "store" / "Dockerfile").write_text(STORE, encoding="utf-8")
    (folder / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    return folder


def _snapshots(inner: Inner) -> set[str]:
    return {r.labels[L.SNAPSHOT] for r in inner.backend.list_resources({L.SNAPSHOT: None})}


def test_the_marker_resets_after_the_test(inner: Inner, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _store(inner, monkeypatch)
    inner.pytester.makepyfile(test_marked=TESTS)
    before = _snapshots(inner)
    try:
        result = inner.run(blueprint=folder, timeout=300)
        result.assert_outcomes(passed=3)
    finally:
        for key in _snapshots(inner) - before:
            S.remove(inner.backend, key)


KEEP_TESTS = """
import pytest

@pytest.mark.envkit_reset("store")
def test_a_fails_after_writing(envkit_env):
    envkit_env.exec("store", ["sh", "-c", "echo dirty > /data/init"])
    assert False, "the test wrote something wrong"

def test_b_not_reached(envkit_env):
    pass
"""


def test_keep_leaves_a_failed_tests_writes_in_the_kept_run(inner: Inner, monkeypatch: pytest.MonkeyPatch) -> None:
    import envkit

    folder = _store(inner, monkeypatch)
    inner.pytester.makepyfile(test_kept=KEEP_TESTS)
    before = _snapshots(inner)
    try:
        result = inner.run("-x", "--envkit-keep", blueprint=folder, timeout=300)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["not reset after failed test test_kept.py::test_a_fails_after_writing: run * "
                                     "is kept (--envkit-keep)*"])
        (kept,) = inner.extra_runs
        env = envkit.attach(kept, backend=inner.backend)
        assert env.exec("store", ["cat", "/data/init"]).output.strip() == "dirty"  # as the failed test left it
    finally:
        if inner.extra_runs:  # first: a snapshot in use is not removed
            envkit.down(sorted(inner.extra_runs), backend=inner.backend)
        for key in _snapshots(inner) - before:
            S.remove(inner.backend, key)
