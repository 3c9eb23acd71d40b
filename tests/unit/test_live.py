"""Working on a live run (envkit.live) on the in-memory engine: the order of stops and starts, what a
restart keeps, and a rebuild that replaces one service while its dependants keep running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.base import Capability, ExecResult, PortKey
from envkit.backends.fake import FakeBackend
from envkit.errors import ServiceFailed, Unsupported, UsageError
from envkit.live import plan_lifecycle

from .conftest import WriteBlueprint

SHOP = """
    name: shop
    services:
      db:
        image: postgres:16
        ports: [5432]
        ready: {exec: [pg_isready], timeout: 1s}
      cache:
        image: redis:7
        ports: ["16379:6379"]
      migrate:
        kind: job
        build: ./app
        depends_on: [db]
      api:
        build: ./app
        replicas: 2
        ports: [8080]
        depends_on: {migrate: completed, cache: started, db: ready}
      web:
        build: ./web
        depends_on: [api]
"""
FILES = {"app/Dockerfile": "FROM python:3.12-slim\n", "app/main.py": "print('v1')\n", "web/Dockerfile": "FROM x\n"}


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"postgres:16", "redis:7"})
    fake.exit_codes["migrate"] = 0
    return fake


@pytest.fixture
def folder(write_blueprint: WriteBlueprint) -> Path:
    return write_blueprint(SHOP, FILES)


@pytest.fixture
def env(folder: Path, fake: FakeBackend) -> Iterator[api.Environment]:
    environment = api.up(folder, name="r1", env={}, backend=fake)
    yield environment
    environment.down()


def calls(fake: FakeBackend, method: str) -> list[str]:
    return [name.removeprefix("envkit-r1-") for m, name in fake.calls if m == method]


def ids(env: api.Environment) -> dict[str, str]:
    return {c.name: c.id for c in env.refresh().containers}


def test_restart_of_one_service_touches_only_it_and_waits_for_its_probe(env: api.Environment,
                                                                        fake: FakeBackend) -> None:
    assert plan_lifecycle(env.info, "restart", ["db"]).text() == "\n".join([
        "restart in run r1 (services: db)",
        "  stop:db-1                    stop     envkit-r1-db-1",
        "                               (nothing depends on it)",
        "  start:db-1                   start    envkit-r1-db-1  after stop:db-1",
        "                               (no dependency restarted)",
        "  ready:db-1                   ready    envkit-r1-db-1  after start:db-1",
        "                               (probe exec pg_isready)",
        "  usable:db                    usable   db  after ready:db-1",
        "                               (every replica ready)",
    ])
    before = ids(env)
    fake.calls.clear()
    env.restart("db")
    assert calls(fake, "stop_container") == ["db-1"] and calls(fake, "start_container") == ["db-1"]
    assert "db-1" in calls(fake, "exec")  # its probe, read back from its labels
    assert ids(env) == before  # the containers are kept: no create, no remove
    assert not calls(fake, "create_container") and not calls(fake, "remove_container")


def test_restart_of_everything_stops_dependants_first_and_starts_dependencies_first(env: api.Environment,
                                                                                   fake: FakeBackend) -> None:
    fake.calls.clear()
    result = env.restart()
    stops, starts = calls(fake, "stop_container"), calls(fake, "start_container")
    assert "migrate-1" not in stops + starts  # a job is left alone unless named
    assert result.plan.services == ("api", "cache", "db", "web")
    for dependant, dependency in [("web-1", "api-1"), ("web-1", "api-2"), ("api-1", "db-1"), ("api-2", "cache-1")]:
        assert stops.index(dependant) < stops.index(dependency)
        assert starts.index(dependency) < starts.index(dependant)
    # api waits for db to be *ready* (its condition), so db's probe ran before api started.
    order = [(m, n.removeprefix("envkit-r1-")) for m, n in fake.calls]
    assert order.index(("exec", "db-1")) < order.index(("start_container", "api-1"))


def test_a_named_job_runs_again(env: api.Environment, fake: FakeBackend) -> None:
    fake.calls.clear()
    env.restart("migrate")
    assert calls(fake, "start_container") == ["migrate-1"] and "migrate-1" in calls(fake, "wait_container")


def test_restart_keeps_every_host_port(env: api.Environment) -> None:
    before = {c.name: dict(c.ports) for c in env.refresh().containers}
    result = env.restart("db", "cache")
    assert {c.name: dict(c.ports) for c in env.info.containers} == before and not result.moved and not result.notes


def test_restart_says_which_ephemeral_ports_moved_and_keeps_pinned_ones(folder: Path, fake: FakeBackend) -> None:
    fake.remote = True  # an engine that chooses unpinned host ports itself, anew at each start
    with api.up(folder, name="r1", env={}, backend=fake) as env:
        moved(env)


def moved(env: api.Environment) -> None:
    before = {c.name: dict(c.ports) for c in env.refresh().containers}
    result = env.restart("db", "cache")
    after = {c.name: dict(c.ports) for c in env.info.containers}
    assert after["envkit-r1-cache-1"] == before["envkit-r1-cache-1"]  # pinned: 16379
    assert after["envkit-r1-db-1"][PortKey(5432)].port != before["envkit-r1-db-1"][PortKey(5432)].port
    assert list(result.moved) == ["envkit-r1-db-1"]
    assert "envkit-r1-db-1: host port moved (5432/tcp" in result.notes[0] and "envkit rebuild" in result.notes[0]
    assert env.port("db", 5432) == after["envkit-r1-db-1"][PortKey(5432)].port  # the handle follows


def test_stop_keeps_the_containers_and_start_brings_them_back_ready(env: api.Environment, fake: FakeBackend) -> None:
    env.stop("api")
    states = {c.name: c.status for c in env.refresh().containers}
    assert states["envkit-r1-api-1"] == states["envkit-r1-api-2"] == "exited"
    assert states["envkit-r1-web-1"] == "running"  # only what was named
    env.start("api")
    assert all(c.running for c in env.refresh().replicas("api"))


def test_start_fails_naming_the_service_whose_probe_never_passes(env: api.Environment, fake: FakeBackend) -> None:
    env.stop("db", timeout=0)
    fake.exec_results["db"] = ExecResult(1, "no response")
    fake.emit(env.info.replicas("db")[0].id, "db: FATAL could not open the data directory")
    with pytest.raises(ServiceFailed, match="service db: not ready after 1s") as caught:
        env.start("db")
    assert "db: FATAL could not open the data directory" in str(caught.value)


def test_stop_waits_for_the_grace_given_else_the_blueprints_else_ten_seconds(env: api.Environment) -> None:
    graces = {s.target: s.payload.grace for s in plan_lifecycle(env.info, "stop", ["db"]).steps}  # type: ignore[attr-defined]
    assert graces == {"envkit-r1-db-1": 10.0}
    graces = {s.target: s.payload.grace for s in plan_lifecycle(env.info, "stop", ["db"], timeout=0).steps}  # type: ignore[attr-defined]
    assert graces == {"envkit-r1-db-1": 0}


def test_unknown_services_are_named_with_the_runs_services(env: api.Environment) -> None:
    with pytest.raises(UsageError, match=r"run r1 has no service dbb \(services: api, cache, db, migrate, web\)"):
        env.restart("dbb")


def test_an_engine_that_cannot_signal_is_refused(folder: Path) -> None:
    fake = FakeBackend(images={"postgres:16", "redis:7"}, capabilities=set(Capability) - {Capability.SIGNAL})
    fake.exit_codes["migrate"] = 0
    with api.up(folder, name="r1", env={}, backend=fake) as env:
        with pytest.raises(Unsupported, match="engine fake cannot stop containers or send them signals"):
            env.restart("db")
        with pytest.raises(Unsupported):
            env.rebuild("api")


def test_rebuild_after_a_code_change_replaces_only_what_changed_keeping_name_aliases_and_ports(
        env: api.Environment, fake: FakeBackend, folder: Path) -> None:
    before = {c.name: c for c in env.refresh().containers}
    old_image = next(t for t in fake.images if t.startswith("envkit/shop-app:"))
    assert env.rebuild().plan.services == ()  # nothing changed: nothing to do
    (folder / "app" / "main.py").write_text("print('v2')\n")
    fake.calls.clear()
    result = env.rebuild(timeout=0)
    assert result.plan.services == ("api",)  # changed and a service; migrate is a job, web has its own context
    assert [t for m, t in fake.calls if m == "build_image"] == [result.plan.steps[0].target]
    new_image = result.plan.steps[0].target
    assert new_image != old_image and new_image.startswith("envkit/shop-app:")
    after = {c.name: c for c in env.info.containers}
    for name in ("envkit-r1-api-1", "envkit-r1-api-2"):
        assert after[name].id != before[name].id  # a new container ...
        assert after[name].ports == before[name].ports  # ... on the same host ports
        spec = fake.containers[after[name].id].spec
        assert spec.image == new_image and spec.name == name
        assert [(a.network, a.aliases[:2]) for a in spec.networks] == [("envkit-r1-default", ("api", name[-5:]))]
        assert dict(spec.labels)[L.CREATED_AT] == before[name].labels[L.CREATED_AT]  # still the same run
    for name in ("envkit-r1-web-1", "envkit-r1-db-1", "envkit-r1-cache-1"):
        assert after[name].id == before[name].id and after[name].running  # dependants and the rest keep running
    assert not [n for n in calls(fake, "stop_container") if not n.startswith("api-")]
    # One replica at a time: the second stops only once the first is back.
    steps = {s.id: s for s in result.plan.steps}
    assert "ready:api-1" in steps["stop:api-2"].after


def test_rebuild_of_a_named_service_replaces_it_even_unchanged_and_reads_the_blueprint_again(
        env: api.Environment, fake: FakeBackend, folder: Path) -> None:
    text = (folder / "blueprint.yaml").read_text().replace("image: postgres:16\n", "image: postgres:16\n"
                                                           "    environment: {MODE: new}\n")
    (folder / "blueprint.yaml").write_text(text)
    port = env.port("db", 5432)
    env.rebuild("db")
    db = env.info.replicas("db")[0]
    assert dict(fake.containers[db.id].spec.environment) == {"MODE": "new"}
    assert env.port("db", 5432) == port


def test_rebuild_refuses_what_the_run_cannot_take(env: api.Environment, folder: Path) -> None:
    text = (folder / "blueprint.yaml").read_text()
    (folder / "blueprint.yaml").write_text(text.replace("ports: [5432]", "ports: [5432]\n    networks: [other]")
                                           + "networks:\n  other: {}\n")
    with pytest.raises(UsageError, match="service db is now on network envkit-r1-other, which run r1 does not have"):
        env.rebuild("db")
    with pytest.raises(UsageError, match="has no service nope"):
        env.rebuild("nope")
