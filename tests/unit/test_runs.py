"""Finding and tearing down runs by their labels alone, against the in-memory engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from envkit import labels as L
from envkit.backends.base import PortKey, Resource, VolumeSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import RunNotFound
from envkit.execute import Executor
from envkit.plan import RunIdentity, make_plan
from envkit.runs import describe, list_runs, teardown

BLUEPRINT = """
    name: shop
    volumes:
      data: {}
    services:
      db:
        image: postgres:16
        volumes: ["data:/var/lib/postgresql/data"]
        ports: [5432]
      api:
        image: python:3
        depends_on: [db]
        stop_grace_period: 5s
"""


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


def bring_up(fake: FakeBackend, bp: Blueprint, run_id: str) -> None:
    identity = RunIdentity(run_id, "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
    Executor(fake).run(make_plan(bp, identity, frozenset(fake.images), {}, capabilities=fake.capabilities))


@pytest.fixture
def fake(shop: Blueprint) -> FakeBackend:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    bring_up(fake, shop, "run-a")
    fake.calls.clear()
    return fake


def test_teardown_removes_containers_then_networks_then_volumes(fake: FakeBackend) -> None:
    counts = teardown(fake, ["run-a"])
    assert counts == {"container": 2, "network": 1, "volume": 1}
    removals = [method for method, _ in fake.calls if method.startswith("remove_")]
    assert removals == ["remove_container"] * 2 + ["remove_network", "remove_volume"]
    assert (fake.containers, fake.networks, fake.volumes) == ({}, {}, {})


def test_teardown_touches_only_the_named_run(fake: FakeBackend, shop: Blueprint) -> None:
    bring_up(fake, shop, "run-b")
    teardown(fake, ["run-a"])
    left = fake.list_resources({L.MANAGED: "true"})
    assert {r.labels[L.RUN] for r in left} == {"run-b"}
    assert len(left) == 4


def test_teardown_treats_what_is_already_gone_as_removed(fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first listing still shows resources that another process removes before we get to them.
    ghosts = [Resource("container", "ctr-gone", "envkit-run-a-old-1", {L.RUN: "run-a"}),
              Resource("network", "net-gone", "envkit-run-a-old", {L.RUN: "run-a"}),
              Resource("volume", "envkit-run-a-old", "envkit-run-a-old", {L.RUN: "run-a"})]
    real = fake.list_resources
    listings = iter([True])

    def stale_once(labels: Mapping[str, str | None]) -> list[Resource]:
        return real(labels) + (ghosts if next(listings, False) else [])

    monkeypatch.setattr(fake, "list_resources", stale_once)
    assert teardown(fake, ["run-a"]) == {"container": 3, "network": 2, "volume": 2}
    assert real({L.RUN: "run-a"}) == []


def test_teardown_passes_the_stop_grace_from_the_labels(fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    graces: dict[str, float] = {}
    remove = fake.remove_container

    def record(container_id: str, grace: float) -> None:
        graces[fake.containers[container_id].spec.name] = grace
        remove(container_id, grace)

    monkeypatch.setattr(fake, "remove_container", record)
    teardown(fake, ["run-a"])
    assert graces == {"envkit-run-a-api-1": 5.0, "envkit-run-a-db-1": 0.0}


def test_teardown_of_an_unknown_run_raises_run_not_found(fake: FakeBackend) -> None:
    with pytest.raises(RunNotFound, match="no run 'nope' on this engine"):
        teardown(fake, ["nope"])
    assert RunNotFound.exit_code == 7


def test_teardown_of_an_unknown_run_may_be_allowed(fake: FakeBackend) -> None:
    assert teardown(fake, ["nope"], missing_ok=True) == {"container": 0, "network": 0, "volume": 0}


def test_list_runs_groups_resources_by_run(fake: FakeBackend, shop: Blueprint) -> None:
    bring_up(fake, shop, "run-b")
    fake.remove_container(next(c.id for c in fake.containers.values() if c.spec.name == "envkit-run-b-api-1"), 0)
    runs = list_runs(fake)
    assert [(r.run_id, r.blueprint, r.containers, r.running, r.networks, r.volumes) for r in runs] == [
        ("run-a", "shop", 2, 2, 1, 1),
        ("run-b", "shop", 1, 1, 1, 1),
    ]
    assert runs[0].created_at == "2030-01-01T00:00:00Z"


def test_list_runs_ignores_resources_envkit_did_not_make(fake: FakeBackend) -> None:
    fake.create_volume(VolumeSpec("someone-elses", ((L.RUN, "theirs"),)))
    assert [r.run_id for r in list_runs(fake)] == ["run-a"]


def test_describe_reads_a_run_back_from_its_labels(fake: FakeBackend) -> None:
    info = describe(fake, "run-a")
    assert info.blueprint == "shop"
    assert sorted(info.services) == ["api", "db"]
    assert info.networks == ("envkit-run-a-default",)
    assert info.volumes == ("envkit-run-a-data",)
    assert info.replicas("db")[0].ports[PortKey(5432)].host_ip == "127.0.0.1"
    with pytest.raises(RunNotFound):
        describe(fake, "nope")


def test_describe_carries_exit_codes_a_listing_does_not(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        name: shop
        services:
          migrate:
            image: python:3
            kind: job
    """)
    fake = FakeBackend(images={"python:3"})
    fake.exit_codes["migrate"] = 0
    bring_up(fake, bp, "run-j")
    assert fake.list_containers({L.RUN: "run-j"})[0].exit_code is None  # a listing does not say
    job = describe(fake, "run-j").replicas("migrate")[0]
    assert (job.status, job.exit_code, job.detailed) == ("exited", 0, True)


def test_a_network_left_with_endpoints_of_containers_gone_is_removed_after_forcing_them_off(
        fake: FakeBackend) -> None:
    # dockerd 20.10: "has active endpoints" with no container behind them; the endpoints are forced off.
    fake.stale_endpoints["envkit-run-a-default"] = {"envkit-run-a-api-1", "envkit-run-a-old-1"}
    assert teardown(fake, ["run-a"]) == {"container": 2, "network": 1, "volume": 1}
    assert fake.networks == {} and fake.stale_endpoints["envkit-run-a-default"] == set()
    forced = [target for method, target in fake.calls if method == "force_off_network"]
    assert forced == ["envkit-run-a-default/envkit-run-a-api-1", "envkit-run-a-default/envkit-run-a-old-1"]


def test_a_network_that_stays_stuck_is_reported_by_name(fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    from envkit import retry
    from envkit.errors import EngineError

    monkeypatch.setattr(retry, "ATTEMPTS", 3)
    monkeypatch.setattr("time.sleep", lambda s: None)  # teardown's own passes
    fake.stale_endpoints["envkit-run-a-default"] = {"envkit-run-a-ghost"}
    fake.stuck_endpoints.add("envkit-run-a-ghost")
    with pytest.raises(EngineError) as caught:
        teardown(fake, ["run-a"])
    text = str(caught.value)
    assert "could not remove network envkit-run-a-default" in text
    assert "still has active endpoints: still attached: envkit-run-a-ghost (no container)" in text
    assert "forced off: envkit-run-a-ghost" in text
    assert fake.containers == {} and fake.volumes == {}  # everything else went


def test_a_network_a_running_container_uses_is_never_forced(fake: FakeBackend) -> None:
    from envkit.errors import Busy

    network = next(iter(fake.networks))
    with pytest.raises(Busy, match="envkit-run-a-api-1 \\(running\\)"):
        fake.remove_network(network)
    assert all(method != "force_off_network" for method, _ in fake.calls)
    assert all(c.status == "running" for c in fake.containers.values())
