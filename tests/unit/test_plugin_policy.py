"""The plugin's decisions on the fake engine: what release does (keep / reuse / shared / remove), the
shared-state file protocol between xdist workers, the summary lines, which events -v shows, and the
SIGTERM trap."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.api import Environment
from envkit.backends.base import ContainerSpec, NetworkAttachment, NetworkSpec
from envkit.backends.fake import FakeBackend
from envkit.events import Event
from envkit.pytest_plugin import policy
from envkit.pytest_plugin.pool import Entry, How
from envkit.pytest_plugin.report import shown, summary_lines, summary_rows
from envkit.pytest_plugin.shared import SharedRun, sweep
from envkit.signals import Terminated, trap_sigterm


def make_run(fake: FakeBackend, run_id: str, owned: bool = True) -> Environment:
    """A live run on the fake engine, labelled as envkit labels one: a network and a running container."""
    labels = ((L.MANAGED, "true"), (L.RUN, run_id), (L.SERVICE, "web"))
    fake.create_network(NetworkSpec(f"envkit-{run_id}-default", labels))
    container = fake.create_container(ContainerSpec(f"envkit-{run_id}-web-1", "nginx:1", labels,
                                                    (NetworkAttachment(f"envkit-{run_id}-default", ("web",)),)))
    fake.start_container(container)
    return Environment(fake, run_id, owned=owned)


def left(fake: FakeBackend, run_id: str) -> list[str]:
    return sorted(f"{r.kind} {r.name}" for r in fake.list_resources({L.MANAGED: "true", L.RUN: run_id}))


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"nginx:1"})


def entry(env: Environment, how: How = "up", failed: bool = False) -> Entry:
    return Entry(env, "bp", "session", how, failed=failed)


# -- release policy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("how", "keep", "failed", "action", "outcome"), [
    ("up", False, False, "down", "removed"),
    ("up", False, True, "down", "removed"),
    ("up", True, False, "down", "removed"),
    ("up", True, True, "detach", "kept"),
    ("reuse", True, True, "nothing", "left running"),
    ("reuse", False, False, "nothing", "left running"),
    ("shared", True, True, "nothing", "left to the last worker"),
])
def test_release_decision(fake: FakeBackend, how: How, keep: bool, failed: bool, action: str, outcome: str) -> None:
    env = make_run(fake, "r1")
    assert policy.decide(entry(env, how, failed), keep) == (action, outcome)
    env.detach()


def test_release_removes_the_run_or_keeps_it_detached(fake: FakeBackend) -> None:
    removed, kept = make_run(fake, "r1"), make_run(fake, "r2")
    first, second = entry(removed), entry(kept, failed=True)
    assert policy.apply(first, keep=True) is None and first.outcome == "removed"
    assert policy.apply(second, keep=True) is None and second.outcome == "kept"
    assert left(fake, "r1") == []
    assert left(fake, "r2") == ["container envkit-r2-web-1", "network envkit-r2-default"]
    assert not kept.owned  # not removed at interpreter exit either
    kept.down()


def test_a_reused_run_is_left_running(fake: FakeBackend) -> None:
    env = make_run(fake, "r1", owned=False)
    released = entry(env, "reuse", failed=True)
    assert policy.apply(released, keep=False) is None
    assert released.outcome == "left running" and left(fake, "r1")
    env.down()


class Interrupting(FakeBackend):
    """An engine whose container removals a Ctrl-C cuts short, ``times`` times."""

    def __init__(self, times: int) -> None:
        super().__init__(images={"nginx:1"})
        self.times = times

    def remove_container(self, container_id: str, grace: float) -> None:
        if self.times > 0:
            self.times -= 1
            raise KeyboardInterrupt
        super().remove_container(container_id, grace)


def test_a_second_ctrl_c_starts_the_teardown_again() -> None:
    fake = Interrupting(times=1)
    released = entry(make_run(fake, "r1"))
    assert policy.apply(released, keep=False) is None
    assert released.outcome == "removed" and left(fake, "r1") == []


def test_a_teardown_cut_short_every_time_says_the_run_may_be_left() -> None:
    fake = Interrupting(times=99)
    env = make_run(fake, "r1")
    released = entry(env)
    problem = policy.apply(released, keep=False)
    assert released.outcome == policy.MAY_BE_LEFT
    assert problem == "run r1 may be left (teardown interrupted); remove it with: envkit down r1"
    assert left(fake, "r1")
    fake.times = 0
    env.down()


# -- the shared environment of xdist workers --------------------------------------------------------------
def test_two_workers_share_one_run_and_the_last_one_removes_it(fake: FakeBackend, tmp_path: Path) -> None:
    folder = tmp_path / "envkit-shared-uid"
    gw0, gw1 = SharedRun(folder, 2, "gw0"), SharedRun(folder, 2, "gw1")
    ups: list[str] = []

    def up() -> Environment:
        ups.append("up")
        return make_run(fake, "shared-1")

    def attach(run: str) -> Environment:
        return Environment(fake, run, owned=False)

    def remove(run: str) -> None:
        Environment(fake, run, owned=False).down()

    first = gw0.acquire(up, attach)
    second = gw1.acquire(up, attach)
    assert ups == ["up"] and first.run_id == second.run_id == "shared-1"
    assert not first.owned  # neither worker removes it when its own process ends
    state = json.loads((folder / "state.json").read_text())
    assert state == {"run": "shared-1", "done": [], "failed": False, "kept": False}

    assert gw1.finish(keep=False, remove=remove) == "left to the last worker"
    assert left(fake, "shared-1"), "removed under the other worker"
    assert json.loads((folder / "state.json").read_text())["done"] == ["gw1"]
    assert gw0.finish(keep=False, remove=remove) == "removed by the last worker (gw0)"
    assert left(fake, "shared-1") == []
    assert json.loads((folder / "state.json").read_text())["run"] is None
    assert gw0.finish(keep=False, remove=remove) == "removed"  # idempotent

    assert sweep(folder, remove) is None
    assert not folder.exists()


def test_a_failure_on_any_worker_keeps_the_shared_run_with_keep(fake: FakeBackend, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    gw0, gw1 = SharedRun(folder, 2, "gw0"), SharedRun(folder, 2, "gw1")
    removed: list[str] = []
    gw0.acquire(lambda: make_run(fake, "shared-2"), lambda run: Environment(fake, run, owned=False))
    gw0.failed = True
    assert gw0.finish(keep=True, remove=removed.append) == "left to the last worker"
    assert gw1.finish(keep=True, remove=removed.append) == "kept"
    assert removed == [] and left(fake, "shared-2")
    assert sweep(folder, removed.append) == "shared-2"  # the controller reports it, and leaves it
    assert removed == [] and not folder.exists()
    Environment(fake, "shared-2", owned=False).down()


def test_the_controller_removes_what_a_crashed_worker_left(fake: FakeBackend, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    gw0 = SharedRun(folder, 2, "gw0")
    gw0.acquire(lambda: make_run(fake, "shared-3"), lambda run: Environment(fake, run, owned=False))
    assert gw0.finish(keep=False, remove=lambda run: None) == "left to the last worker"
    # gw1 crashed: it never finishes.
    assert sweep(folder, lambda run: Environment(fake, run, owned=False).down()) is None
    assert left(fake, "shared-3") == [] and not folder.exists()


# -- reporting ------------------------------------------------------------------------------------------------
def test_summary_lines(fake: FakeBackend) -> None:
    kept, removed = entry(make_run(fake, "r1")), entry(make_run(fake, "r2"))
    kept.outcome, removed.outcome, kept.seconds = "kept", "removed", 1.234
    rows = summary_rows([kept, removed])
    assert summary_lines(rows, ["shared environment: boom"], verbose=False) == [
        "kept run r1 after a failure; remove it with: envkit down r1", "shared environment: boom"]
    assert summary_lines(rows, [], verbose=True) == [
        "kept run r1 after a failure; remove it with: envkit down r1",
        "run r1: bp, session scope, up in 1.2s, kept",
        "run r2: bp, session scope, up in 0.0s, removed"]
    assert summary_lines([], [], verbose=True) == []
    for env in (kept.env, removed.env):
        env.down()


@pytest.mark.parametrize(("event", "is_shown"), [
    (Event("plan", "r1", "run r1: 5 steps"), True),
    (Event("rollback", "r1", "removing"), True),
    (Event("teardown", "r1", "run r1 removed", phase="done"), True),
    (Event("note", "r1", "kept"), True),
    (Event("step", "r1", "web ready", phase="done", action="ready", service="web", step="x"), True),
    (Event("step", "r1", "job done", phase="done", action="complete", service="job"), True),
    (Event("step", "r1", "web ready?", phase="start", action="ready", service="web"), False),
    (Event("step", "r1", "ready:web", phase="done", action="start", service="web", step="ready:web"), False),
    (Event("output", "r1", "Step 1/3", action="build", detail="Step 1/3"), False),
    (Event("removed", "r1", "container x", detail="container"), False),
])
def test_verbose_shows_plan_readiness_and_clean_up_by_typed_fields(event: Event, is_shown: bool) -> None:
    assert shown(event) is is_shown


# -- SIGTERM --------------------------------------------------------------------------------------------------
def test_the_sigterm_trap_is_installed_where_nobody_handles_it_and_restored() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        restore = trap_sigterm(unless_handled=True)
        assert restore is not None
        try:
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
            assert trap_sigterm(unless_handled=True) is None  # handled now: a second trap stays out
        finally:
            restore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, mine)
        restore()  # once only: a second call does not put back the handler it replaced
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_the_sigterm_trap_respects_a_handler_of_the_program() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert trap_sigterm(unless_handled=True) is None
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
