"""Garbage collection on the in-memory engine: expiry, owners gone or alive, orphans, down --all, the
sweep in passing and the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envkit import api, gc, sweep
from envkit import labels as L
from envkit.backends.base import NetworkSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.cli import main
from envkit.errors import UsageError
from envkit.events import Event
from envkit.execute import Executor
from envkit.plan import RunIdentity, make_plan

BLUEPRINT = """
    name: shop
    volumes:
      data: {}
    services:
      db:
        image: postgres:16
        volumes: ["data:/var/lib/postgresql/data"]
"""
HOST = socket.gethostname()
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"postgres:16"})


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """A pid no process has (one that has just exited)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def bring_up(fake: FakeBackend, bp: Blueprint, run_id: str, *, pid: int, host: str = HOST,
             created: str = "2030-01-01T10:00:00Z", expires: str = "", lifetime: str = "owner") -> None:
    identity = RunIdentity(run_id, f"me@{host}:{pid}", created, "0.1.0", expires, lifetime)
    Executor(fake).run(make_plan(bp, identity, frozenset(fake.images), {}, capabilities=fake.capabilities))


def runs_left(fake: FakeBackend) -> set[str]:
    return {r.labels[L.RUN] for r in fake.list_resources({L.MANAGED: "true", L.RUN: None})}


def test_ttl_text_and_expiry_label() -> None:
    assert [gc.parse_ttl(t) for t in ("4h", "30m", "90s", "1d", "1h30m", "0", "12.5")] == [
        14400, 1800, 90, 86400, 5400, 0, 12.5]
    for bad in ("4 hours", "-1", "1e300", "", "1w", "400d"):
        with pytest.raises(UsageError, match="--ttl"):
            gc.parse_ttl(bad)
    assert gc.expiry("2030-01-01T00:00:00Z", 0.2) == "2030-01-01T00:00:01Z"  # never before the ttl has passed
    assert gc.expiry("2030-01-01T00:00:00Z", 4 * 3600) == "2030-01-01T04:00:00Z"
    assert gc.expiry("2030-01-01T00:00:00Z", None) == gc.expiry("2030-01-01T00:00:00Z", 0) == ""


def test_up_stamps_expiry_and_lifetime(shop: Blueprint, fake: FakeBackend) -> None:
    with api.up(shop, name="t-1", backend=fake, ttl=3600, lifetime="detached"):
        labels = fake.list_resources({L.RUN: "t-1"})[0].labels
        created = datetime.strptime(labels[L.CREATED_AT], gc.STAMP_FORMAT).replace(tzinfo=UTC)
        assert labels[L.EXPIRES_AT] == gc.expiry(labels[L.CREATED_AT], 3600)
        assert (datetime.strptime(labels[L.EXPIRES_AT], gc.STAMP_FORMAT).replace(tzinfo=UTC) - created).seconds == 3600
        assert labels[L.LIFETIME] == "detached"
    with api.up(shop, name="t-2", backend=fake):
        labels = fake.list_resources({L.RUN: "t-2"})[0].labels
        assert L.EXPIRES_AT not in labels and labels[L.LIFETIME] == "owner"
    with pytest.raises(UsageError, match="ttl"):
        api.up(shop, name="t-3", backend=fake, ttl=-5)


def test_owner_liveness_on_this_host_and_others(dead_pid: int) -> None:
    me = os.getpid()
    uid = os.getuid()
    started = gc.lookup_process(me)
    assert started is not None and started.uid == uid and started.started is not None
    now_text = datetime.now(UTC).strftime(gc.STAMP_FORMAT)
    user = f"{uid}"  # by uid: works whatever this user's name is
    assert gc.owner_liveness(f"{user}@{HOST}:{me}", now_text)[0] == "alive"
    assert gc.owner_liveness(f"{user}@{HOST}:{dead_pid}", now_text) == ("gone", f"owner process {dead_pid} is gone")
    assert gc.owner_liveness(f"{user}@elsewhere:{me}", now_text) == ("unknown", "owner on another host (elsewhere)")
    assert gc.owner_liveness("", now_text)[0] == "unknown"
    # The pid is there, but it is not the owner: started after the run was created, or another user's.
    reused = gc.owner_liveness(f"{user}@{HOST}:{me}", "2000-01-01T00:00:00Z")
    assert reused[0] == "gone" and "started after the run" in reused[1]
    other = gc.owner_liveness(f"{uid + 1}@{HOST}:{me}", now_text)
    assert other[0] == "gone" and "another user's" in other[1]
    # No start time known (not Linux): a live pid counts as the owner, so nothing is removed wrongly.
    assert gc.owner_liveness(f"{user}@{HOST}:4242", "2000-01-01T00:00:00Z",
                             lookup=lambda pid: gc.Process(None, None))[0] == "alive"


def test_survey_and_collect(shop: Blueprint, fake: FakeBackend, dead_pid: int) -> None:
    live_pid = os.getppid()  # alive, and started before "now"
    created_now = datetime.now(UTC).strftime(gc.STAMP_FORMAT)
    bring_up(fake, shop, "expired", pid=live_pid, created=created_now, expires="2000-01-01T00:00:00Z")
    bring_up(fake, shop, "owner-gone", pid=dead_pid)
    bring_up(fake, shop, "live", pid=live_pid, created=created_now)
    bring_up(fake, shop, "detached", pid=dead_pid, lifetime="detached", expires="2999-01-01T00:00:00Z")
    bring_up(fake, shop, "far-away", pid=dead_pid, host="elsewhere")
    found = gc.survey(fake)
    verdicts = {g.run_id: (g.collect, g.reason) for g in found.runs}
    assert verdicts == {
        "expired": (True, "expired at 2000-01-01T00:00:00Z"),
        "owner-gone": (True, f"owner process {dead_pid} is gone"),
        "live": (False, f"owner process {live_pid} is alive"),
        "detached": (False, "detached; expires at 2999-01-01T00:00:00Z"),
        "far-away": (False, "owner on another host (elsewhere); no expiry"),
    }
    assert found.orphans == ()
    counts = gc.collect(fake, found)
    assert counts == {"container": 2, "network": 2, "volume": 2}
    assert runs_left(fake) == {"live", "detached", "far-away"}


def test_orphans_are_networks_and_volumes_nobody_alive_holds_and_never_snapshots(
        shop: Blueprint, fake: FakeBackend, dead_pid: int) -> None:
    bring_up(fake, shop, "gutted", pid=dead_pid, lifetime="detached")
    for c in list(fake.containers.values()):
        fake.remove_container(c.id, 0)  # e.g. `docker rm -f` by hand
    stamp = {L.MANAGED: "true", L.RUN: "gutted", L.OWNER: f"me@{HOST}:{dead_pid}",
             L.CREATED_AT: "2030-01-01T10:00:00Z", L.LIFETIME: "detached"}
    fake.create_network(NetworkSpec("envkit-snap", tuple({**stamp, L.ROLE: "snapshot"}.items())))
    # A run still coming up (its owner alive): networks before containers is normal, never an orphan.
    bring_up(fake, shop, "building", pid=os.getppid(), created=datetime.now(UTC).strftime(gc.STAMP_FORMAT))
    for c in [c for c in fake.containers.values() if c.labels[L.RUN] == "building"]:
        fake.remove_container(c.id, 0)
    found = gc.survey(fake)
    assert sorted(o.resource.name for o in found.orphans) == ["envkit-gutted-data", "envkit-gutted-default"]
    assert "no container of run gutted is left" in found.orphans[0].reason
    assert gc.collect(fake, found) == {"container": 0, "network": 1, "volume": 1}
    assert sorted(n.spec.name for n in fake.networks.values()) == ["envkit-building-default", "envkit-snap"]


def test_down_all_leaves_runs_of_live_processes_unless_told(shop: Blueprint, fake: FakeBackend,
                                                           dead_pid: int) -> None:
    created_now = datetime.now(UTC).strftime(gc.STAMP_FORMAT)
    bring_up(fake, shop, "theirs", pid=os.getppid(), created=created_now)
    bring_up(fake, shop, "remote", pid=1, host="elsewhere")
    bring_up(fake, shop, "nobodys", pid=dead_pid, lifetime="detached")
    with api.up(shop, name="mine", backend=fake):
        notes: list[Event] = []
        api.down(all_runs=True, backend=fake, on_event=notes.append)
        assert runs_left(fake) == {"theirs", "remote"}  # this process's own run goes, and nobody's
        assert [e.message for e in notes if e.kind == "note"] == [
            "left 2 runs that may belong to running processes: remote, theirs (--include-live removes them too)"]
    api.down(all_runs=True, backend=fake, include_live=True)
    assert runs_left(fake) == set()


def test_sweep_in_passing_removes_expired_runs_at_most_once_per_interval(
        shop: Blueprint, fake: FakeBackend, tmp_path: Path, dead_pid: int) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    bring_up(fake, shop, "old", pid=os.getppid(), expires="2030-01-01T11:00:00Z")
    bring_up(fake, shop, "young", pid=dead_pid, expires="2030-01-01T13:00:00Z")
    bring_up(fake, shop, "forever", pid=dead_pid)
    fake.calls.clear()
    assert sweep.sweep_in_passing(fake, environment=env, now=NOW) == ["old"]
    assert fake.calls[0] == ("list_resources", f"{L.MANAGED}=true,{L.EXPIRES_AT}")  # one filtered listing
    assert runs_left(fake) == {"young", "forever"}  # owner gone is gc's to judge, not the sweep's
    assert [p.name[:6] for p in (tmp_path / "envkit").iterdir()] == ["sweep-"]
    fake.calls.clear()
    later = datetime(2030, 1, 1, 14, 0, tzinfo=UTC)
    assert sweep.sweep_in_passing(fake, environment=env, now=later) == []  # swept a moment ago: not again
    assert fake.calls == []
    assert sweep.sweep_in_passing(fake, environment={**env, sweep.SWEEP_SWITCH: "0"}, now=later) == ["young"]
    assert sweep.sweep_in_passing(fake, environment={**env, sweep.SWEEP_SWITCH: "off"}, now=later) == []
    assert runs_left(fake) == {"forever"}


def test_sweep_in_passing_never_fails_the_command(fake: FakeBackend, tmp_path: Path) -> None:
    (tmp_path / "envkit").write_text("a file where the folder should be")
    assert sweep.sweep_in_passing(fake, environment={"XDG_CACHE_HOME": str(tmp_path)}) == []


def test_gc_command(shop: Blueprint, fake: FakeBackend, dead_pid: int, capsys: pytest.CaptureFixture[str]) -> None:
    bring_up(fake, shop, "stale", pid=dead_pid)
    bring_up(fake, shop, "kept", pid=dead_pid, lifetime="detached")
    assert main(["gc", "--dry-run", "-v"], backend=fake) == 0
    captured = capsys.readouterr()
    assert f"would remove run stale: owner process {dead_pid} is gone (3 resources)" in captured.err
    assert "left run kept: detached; no expiry" in captured.err
    assert "would remove 1 runs and 0 orphaned networks or volumes; 1 runs stay" in captured.out
    assert runs_left(fake) == {"stale", "kept"}  # a dry run removes nothing
    assert main(["gc", "--json"], backend=fake) == 0
    doc = capsys.readouterr().out
    assert '"remove": true' in doc and '"removed": {' in doc and '"container": 1' in doc
    assert runs_left(fake) == {"kept"}


def test_a_run_whose_up_never_finished_is_collected_once_its_owner_is_gone(shop: Blueprint, fake: FakeBackend,
                                                                          dead_pid: int) -> None:
    # E.g. `envkit up` (detached, 4 h expiry) lost the engine in the middle, so it could not roll back:
    # its claim is still there, and nobody was ever handed the run.
    from envkit.claim import claim

    live_pid = os.getppid()
    created_now = datetime.now(UTC).strftime(gc.STAMP_FORMAT)
    for run_id, pid, created in (("lost", dead_pid, "2030-01-01T10:00:00Z"), ("coming-up", live_pid, created_now)):
        labels = {L.MANAGED: "true", L.RUN: run_id, L.OWNER: f"me@{HOST}:{pid}", L.CREATED_AT: created,
                  L.LIFETIME: "detached", L.EXPIRES_AT: "2999-01-01T00:00:00Z"}
        claim(fake, run_id, labels)
        bring_up(fake, shop, run_id, pid=pid, created=created, lifetime="detached", expires="2999-01-01T00:00:00Z")
    bring_up(fake, shop, "finished", pid=dead_pid, lifetime="detached", expires="2999-01-01T00:00:00Z")
    verdicts = {g.run_id: (g.collect, g.reason) for g in gc.survey(fake).runs}
    assert verdicts["lost"] == (True, f"its `up` never finished (its claim is left) and owner process {dead_pid} "
                                      "is gone")
    assert verdicts["coming-up"][0] is False and verdicts["finished"][0] is False
    gc.collect(fake, gc.survey(fake))
    assert runs_left(fake) == {"coming-up", "finished"}


def test_a_run_kept_on_failure_gives_up_its_claim(load_text: Callable[..., Blueprint], fake: FakeBackend) -> None:
    # Kept for inspection: handed over like `envkit up`, so gc must not take it for an up that never finished.
    from envkit.errors import ServiceFailed

    bp = load_text("name: shop\nservices:\n  db:\n    image: postgres:16\n")
    fake.exit_codes["db"] = 3
    with pytest.raises(ServiceFailed):
        api.up(bp, name="kept", backend=fake, keep_on_failure=True)
    left = fake.list_resources({L.RUN: "kept"})
    assert left and all(r.labels.get(L.ROLE) != "claim" for r in left)
    api.down(["kept"], backend=fake)


def _fault_helper(fake: FakeBackend, run_id: str, name: str) -> None:
    """What a fault leaves on the engine: a record volume with the run's label but no owner stamp."""
    from envkit.backends.base import VolumeSpec
    fake.create_volume(VolumeSpec(name, ((L.MANAGED, "true"), (L.RUN, run_id), (L.ROLE, "fault"))))


def test_an_owners_teardown_takes_its_runs_unstamped_fault_helpers(shop: Blueprint, fake: FakeBackend,
                                                                   dead_pid: int) -> None:
    bring_up(fake, shop, "s-1", pid=dead_pid)
    _fault_helper(fake, "s-1", "envkit-s-1-fault-1")
    found = gc.survey(fake, now=NOW)
    assert [g.run_id for g in found.collectable] == ["s-1"]  # the owner's generation, gone with its owner
    gc.collect(fake, found)
    assert "s-1" not in runs_left(fake)  # the guarded teardown took the helper as well


def test_fault_helpers_left_by_a_gone_run_are_collected_but_never_another_generations(
        shop: Blueprint, fake: FakeBackend) -> None:
    _fault_helper(fake, "gone-1", "envkit-gone-1-fault-1")  # its run was removed without them
    verdicts = {g.run_id: (g.collect, g.reason) for g in gc.survey(fake, now=NOW).runs}
    assert verdicts["gone-1"][0] and "helpers" in verdicts["gone-1"][1]
    bring_up(fake, shop, "live-1", pid=os.getpid())
    _fault_helper(fake, "live-1", "envkit-live-1-fault-1")  # a live run's fault: stays
    gc.collect(fake, gc.survey(fake, now=NOW))
    assert runs_left(fake) == {"live-1"}
    assert fake.list_resources({L.RUN: "live-1", L.ROLE: "fault"})
