"""The envkit_reset marker: a test's writes are undone after it, the environment stays up for the next."""

from __future__ import annotations

import os
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
    (folder / "blueprint.yaml").write_text(_named(BLUEPRINT), encoding="utf-8")
    return folder


def _named(blueprint: str) -> str:
    """The blueprint under a name of this test's own (its TOKEN), so that ``_snapshots`` sees only its own."""
    return blueprint.replace("name: ", f"name: t{os.environ['TOKEN']}-", 1)


def _snapshots(inner: Inner) -> set[str]:
    """This test's snapshots (by its blueprint's name): tests elsewhere on the engine keep theirs."""
    mine = f"t{os.environ['TOKEN']}-"
    return {r.labels[L.SNAPSHOT] for r in inner.backend.list_resources({L.SNAPSHOT: None})
            if r.labels.get(L.BLUEPRINT, "").startswith(mine)}


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


# Seeded the Compose way, with no snapshot key in the blueprint: the image runs the scripts mounted at
# /docker-entrypoint-initdb.d at its first start. envkit_snapshot = true makes it resettable.
INITDB_STORE = """\
FROM debian:bookworm-slim
VOLUME /data
CMD ["sh", "-c", "[ -f /data/init ] || { for f in /docker-entrypoint-initdb.d/*.sh; do sh \\"$f\\"; done; \\
echo initialised >> /data/runs; }; trap 'exit 0' TERM; sleep infinity & wait"]
"""
INITDB_BLUEPRINT = """\
name: initdb-marked
services:
  store:
    build: ./store
    environment: {TOKEN: "${TOKEN}"}
    volumes: ["./initdb:/docker-entrypoint-initdb.d:ro"]
    ready: {exec: [test, -f, /data/runs]}
"""
INITDB_TESTS = """
import pytest

@pytest.mark.envkit_reset("store")
def test_a_writes(envkit_env):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "seeded"
    envkit_env.exec("store", ["sh", "-c", "echo dirty > /data/init"])

def test_b_sees_the_initialised_state(envkit_env):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "seeded"
    assert envkit_env.exec("store", ["cat", "/data/runs"]).output.split() == ["initialised"]
"""


@pytest.mark.parametrize("how", ["ini", "option"])
def test_envkit_snapshot_makes_an_initdb_seeded_service_resettable(inner: Inner, monkeypatch: pytest.MonkeyPatch,
                                                                   how: str) -> None:
    monkeypatch.setenv("TOKEN", secrets.token_hex(6))
    folder = inner.pytester.path / "bp"
    (folder / "store").mkdir(parents=True)
    (folder / "store" / "Dockerfile").write_text(INITDB_STORE, encoding="utf-8")
    (folder / "initdb").mkdir()
    (folder / "initdb" / "10-seed.sh").write_text("echo seeded > /data/init\n", encoding="utf-8")
    (folder / "blueprint.yaml").write_text(_named(INITDB_BLUEPRINT), encoding="utf-8")
    inner.pytester.makepyfile(test_initdb=INITDB_TESTS)
    if how == "ini":
        inner.pytester.makeini("[pytest]\nenvkit_snapshot = true\n")
    before = _snapshots(inner)
    try:
        result = inner.run(*(["--envkit-snapshot"] if how == "option" else []), blueprint=folder, timeout=300)
        result.assert_outcomes(passed=2)
        assert len(_snapshots(inner) - before) == 1  # captured by the session's environment
    finally:
        for key in _snapshots(inner) - before:
            S.remove(inner.backend, key)


def test_envkit_snapshot_takes_true_or_false(inner: Inner) -> None:
    inner.pytester.makeini("[pytest]\nenvkit_snapshot = always\n")
    inner.pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = inner.run(timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*envkit_snapshot = 'always': use true or false*"])


def test_the_envkit_markers_reset_function_resets_after_each_test(inner: Inner, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(inner, monkeypatch)
    inner.pytester.makepyfile(test_own="""
import pytest

pytestmark = pytest.mark.envkit("bp", reset="function")

@pytest.mark.parametrize("n", range(3))
def test_each_sees_the_seeded_state(envkit_env, n):
    assert envkit_env.exec("store", ["cat", "/data/init"]).output.strip() == "seeded"
    envkit_env.exec("store", ["sh", "-c", "echo dirty > /data/init"])
""")
    before = _snapshots(inner)
    try:
        inner.run(blueprint=None, timeout=300).assert_outcomes(passed=3)
    finally:
        for key in _snapshots(inner) - before:
            S.remove(inner.backend, key)
