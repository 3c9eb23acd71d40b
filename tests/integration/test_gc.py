"""Garbage collection on the real engine: an expired run, a run whose owner died, an orphaned network, a
live run left alone, and the sweep in passing. Removal goes through ``envkit.gc`` limited to this file's
runs (``it-gc-*``), so that runs of other test sessions sharing the engine are never touched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import envkit
from envkit import gc, sweep
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import NetworkSpec, VolumeSpec

from .conftest import BLUEPRINTS, ROOT, envkit_cli, resources_of

HELLO = BLUEPRINTS / "hello"


def mine(found: gc.Survey) -> gc.Survey:
    return gc.Survey(tuple(g for g in found.runs if g.run_id.startswith("it-gc-")),
                     tuple(o for o in found.orphans if o.run_id.startswith("it-gc-")))


def verdict(backend: Backend, run_id: str) -> gc.Generation:
    return next(g for g in gc.survey(backend).runs if g.run_id == run_id)


def cleanup(backend: Backend, run_id: str) -> None:
    if resources_of(backend, run_id):
        envkit.down([run_id], backend=backend)


def wait_gone(backend: Backend, run_id: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := resources_of(backend, run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_an_expired_run_is_listed_by_a_dry_run_and_collected_by_gc(backend: Backend) -> None:
    envkit_cli("up", str(HELLO), "--name", "it-gc-expired", "--ttl", "1s", check=True,
               env={sweep.SWEEP_SWITCH: "off"})
    try:
        time.sleep(1.5)
        result = envkit_cli("gc", "--dry-run", check=True, env={sweep.SWEEP_SWITCH: "off"})
        assert "would remove run it-gc-expired: expired at " in result.stderr
        assert len(resources_of(backend, "it-gc-expired")) == 2  # a dry run removes nothing
        counts = gc.collect(backend, mine(gc.survey(backend)))
        assert counts["container"] >= 1 and resources_of(backend, "it-gc-expired") == []
    finally:
        cleanup(backend, "it-gc-expired")


def test_a_live_run_of_this_process_is_not_collected(backend: Backend) -> None:
    with envkit.up(HELLO, name="it-gc-live", backend=backend) as env:
        g = verdict(backend, env.run_id)
        assert (g.collect, g.liveness, g.reason) == (False, "alive", f"owner process {os.getpid()} is alive")
        assert "it-gc-live" not in envkit_cli("gc", "--dry-run", check=True, env={sweep.SWEEP_SWITCH: "off"}).stderr
        assert "it-gc-live" not in {o.run_id for o in gc.survey(backend).orphans}
    assert resources_of(backend, "it-gc-live") == []


def test_a_run_whose_owner_died_is_collected(backend: Backend, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import os, envkit
        envkit.up({str(HELLO)!r}, name="it-gc-orphaned-run")
        os._exit(0)  # no teardown, and no watchdog (ENVKIT_REAPER=0): the run is left behind
    """))
    subprocess.run([sys.executable, str(script)], check=True, timeout=120, cwd=ROOT,
                   env={**os.environ, "ENVKIT_REAPER": "0"})
    try:
        g = verdict(backend, "it-gc-orphaned-run")
        assert g.collect and g.liveness == "gone" and g.reason.startswith("owner process ")
        gc.collect(backend, mine(gc.survey(backend)))
        assert resources_of(backend, "it-gc-orphaned-run") == []
    finally:
        cleanup(backend, "it-gc-orphaned-run")


def test_an_orphaned_network_is_collected_and_a_snapshot_never(backend: Backend) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that no process has now
    labels = {L.MANAGED: "true", L.RUN: "it-gc-orphan", L.OWNER: f"me@{socket.gethostname()}:{proc.pid}",
              L.CREATED_AT: "2030-01-01T00:00:00Z", L.LIFETIME: "detached"}
    backend.create_network(NetworkSpec("envkit-it-gc-orphan-default", tuple(labels.items())))
    backend.create_volume(VolumeSpec("envkit-it-gc-orphan-snap", tuple({**labels, L.ROLE: "snapshot"}.items())))
    try:
        found = mine(gc.survey(backend))
        assert [o.resource.name for o in found.orphans] == ["envkit-it-gc-orphan-default"]
        assert gc.collect(backend, found) == {"container": 0, "network": 1, "volume": 0}
        assert resources_of(backend, "it-gc-orphan") == ["volume envkit-it-gc-orphan-snap"]
    finally:
        cleanup(backend, "it-gc-orphan")
    assert resources_of(backend, "it-gc-orphan") == []


def test_any_command_sweeps_expired_runs_in_passing(backend: Backend, tmp_path: Path) -> None:
    quiet = {sweep.SWEEP_SWITCH: "off"}
    envkit_cli("up", str(HELLO), "--name", "it-gc-swept", "--ttl", "1s", check=True, env=quiet)
    try:
        time.sleep(1.5)
        began = time.monotonic()
        envkit_cli("ls", check=True, env={"XDG_CACHE_HOME": str(tmp_path)})
        took = time.monotonic() - began
        assert wait_gone(backend, "it-gc-swept", 60) == []  # removed by the background sweep (a busy engine: slow)
        assert [p.name[:6] for p in (tmp_path / "envkit").iterdir()] == ["sweep-"]
        print(f"ls with a sweep took {took:.2f}s")
    finally:
        cleanup(backend, "it-gc-swept")
