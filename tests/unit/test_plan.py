"""The planner is pure: these tests compare its printed plan and the specs it hands the executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit import labels as L
from envkit.backends.base import Capability, NetworkAttachment, PortBinding, PortKey
from envkit.blueprint import Blueprint
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.steps import BuildImage, CreateContainer, CreateNetwork, CreateVolume, StartContainer, Step

ALL = frozenset(Capability)  # an engine that can do everything, as the Docker engine can

IDENTITY = RunIdentity("shop-1", "me@host:42", "2030-01-01T00:00:00Z", "0.1.0")
APP = "envkit/shop-app:0123abcd"
SHOP = """
    name: shop
    services:
      db:
        image: postgres:16
        ports: [5432]
        ready: {exec: [pg_isready], timeout: 30s}
      cache:
        image: redis:7
      migrate:
        kind: job
        build: ./app
        command: python -m shop.migrate
        depends_on: [db]
      api:
        build: ./app
        ports: ["18080:8080"]
        ready: {http: {port: 8080, path: /health}}
        depends_on:
          migrate: completed
          cache: started
    outputs:
      API_URL: http://${services.api.host}:${services.api.ports.8080}
"""
FILES = {"app/Dockerfile": "FROM python:3.12-slim\n"}

EXPECTED = """\
plan for run shop-1 (blueprint shop, services: api, cache, db, migrate)
  image:postgres:16            pull     postgres:16
                               (image not on the engine)
  image:envkit/shop-app:0123abcd build    envkit/shop-app:0123abcd
                               (no image for build context app yet)
  network:default              network  envkit-shop-1-default
                               (private network of the run)
  create:cache-1               create   envkit-shop-1-cache-1  after network:default
                               (container of the run)
  start:cache-1                start    envkit-shop-1-cache-1  after create:cache-1
                               (no dependencies)
  ready:cache-1                ready    envkit-shop-1-cache-1  after start:cache-1
                               (no probe: started (or image healthy))
  usable:cache                 usable   cache  after ready:cache-1
                               (every replica ready)
  create:db-1                  create   envkit-shop-1-db-1  after image:postgres:16, network:default
                               (container of the run)
  start:db-1                   start    envkit-shop-1-db-1  after create:db-1
                               (no dependencies)
  ready:db-1                   ready    envkit-shop-1-db-1  after start:db-1
                               (probe exec pg_isready)
  usable:db                    usable   db  after ready:db-1
                               (every replica ready)
  create:migrate-1             create   envkit-shop-1-migrate-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:migrate-1              start    envkit-shop-1-migrate-1  after create:migrate-1, start:db-1
                               (pre-start behind the gate)
  release:migrate-1            release  envkit-shop-1-migrate-1  after start:migrate-1, usable:db
                               (after db ready)
  complete:migrate-1           complete envkit-shop-1-migrate-1  after release:migrate-1
                               (job must exit 0)
  usable:migrate               usable   migrate  after complete:migrate-1
                               (every replica completed)
  create:api-1                 create   envkit-shop-1-api-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:api-1                  start    envkit-shop-1-api-1  after create:api-1, start:migrate-1, start:cache-1
                               (pre-start behind the gate)
  release:api-1                release  envkit-shop-1-api-1  after start:api-1, start:cache-1, usable:migrate
                               (after migrate completed, cache started)
  ready:api-1                  ready    envkit-shop-1-api-1  after release:api-1
                               (probe http 8080/health)
  usable:api                   usable   api  after ready:api-1
                               (every replica ready)"""


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(SHOP, FILES)


def plan(bp: Blueprint, existing: set[str] | None = None, only: tuple[str, ...] = ()) -> Plan:
    tags = {name: APP for name, svc in bp.services.items() if svc.build}
    return make_plan(bp, IDENTITY, frozenset(existing or {"redis:7"}), tags, only, capabilities=ALL)


def create(p: Plan, step_id: str) -> CreateContainer:
    payload = p.step(step_id).payload
    assert isinstance(payload, CreateContainer)
    return payload


def test_plan_text_of_a_job_a_ready_and_a_started_dependency(shop: Blueprint) -> None:
    assert plan(shop).text() == EXPECTED


def test_every_step_waits_only_for_steps_that_come_before_it(shop: Blueprint) -> None:
    seen: set[str] = set()
    for step in plan(shop).steps:
        assert set(step.after) <= seen, step.id
        seen.add(step.id)


def test_only_plans_the_named_services_and_their_dependencies(shop: Blueprint) -> None:
    p = plan(shop, only=("migrate",))
    assert p.services == ("db", "migrate")
    assert {s.target for s in p.steps if s.action == "create"} == {"envkit-shop-1-db-1", "envkit-shop-1-migrate-1"}


def test_images_the_engine_has_are_neither_built_nor_pulled(shop: Blueprint) -> None:
    p = plan(shop, existing={"redis:7", "postgres:16", APP})
    assert [s for s in p.steps if s.action in ("build", "pull")] == []
    assert p.step("create:api-1").after == ("network:default",)


def test_an_image_shared_by_services_is_built_once(shop: Blueprint) -> None:
    builds = [s for s in plan(shop).steps if s.action == "build"]
    assert [(b.target, b.services) for b in builds] == [(APP, ("migrate", "api"))]
    assert isinstance(builds[0].payload, BuildImage)
    assert builds[0].payload.spec.context == shop.directory / "app"
    assert dict(builds[0].payload.spec.labels)[L.CONTEXT_HASH] == "0123abcd"


def test_container_specs_carry_the_run_labels(shop: Blueprint) -> None:
    spec = create(plan(shop), "create:api-1").spec
    labels = dict(spec.labels)
    assert labels[L.MANAGED] == "true"
    assert labels[L.RUN] == "shop-1"
    assert labels[L.BLUEPRINT] == "shop"
    assert labels[L.SERVICE] == "api"
    assert labels[L.REPLICA] == "1"
    assert labels[L.ROLE] == "service"
    assert labels[L.KIND] == "service"
    assert labels[L.OWNER] == "me@host:42"
    assert labels[L.CREATED_AT] == "2030-01-01T00:00:00Z"
    assert labels[f"{L.OUTPUT_PREFIX}API_URL"] == "http://${services.api.host}:${services.api.ports.8080}"
    assert L.PROBE in labels
    assert spec.name == "envkit-shop-1-api-1"
    assert spec.image == APP
    assert spec.networks == (NetworkAttachment("envkit-shop-1-default", ("api", "api-1")),)


def test_published_ports_default_to_the_loopback_address(shop: Blueprint) -> None:
    p = plan(shop)
    db, api = create(p, "create:db-1").spec, create(p, "create:api-1").spec
    assert db.ports == (PortBinding(PortKey(5432, "tcp"), "127.0.0.1", None),)
    assert api.ports == (PortBinding(PortKey(8080, "tcp"), "127.0.0.1", 18080),)


def test_a_job_is_waited_for_to_complete_and_has_no_ready_step(shop: Blueprint) -> None:
    p = plan(shop)
    actions = {s.id: s.action for s in p.steps}
    assert actions["complete:migrate-1"] == "complete"
    assert "ready:migrate-1" not in actions
    spec = create(p, "create:migrate-1").spec
    assert spec.command == ("python", "-m", "shop.migrate")
    assert dict(spec.labels)[L.KIND] == "job"


def test_replicas_get_their_own_containers_and_dependants_wait_for_all(
    load_text: Callable[..., Blueprint],
) -> None:
    bp = load_text("""
        services:
          worker: {image: busybox, replicas: 2}
          api: {image: busybox, depends_on: [worker]}
    """)
    p = make_plan(bp, IDENTITY, frozenset({"busybox"}), {}, capabilities=ALL)
    # api waits for every replica: its container is pre-started, its process released once the worker
    # service is usable, which is after both replicas are ready
    assert p.step("start:api-1").after == ("create:api-1", "start:worker-1", "start:worker-2")
    assert p.step("release:api-1").after == ("start:api-1", "usable:worker")
    assert p.step("usable:worker").after == ("ready:worker-1", "ready:worker-2")
    spec = create(p, "create:worker-2").spec
    assert spec.hostname == "worker-2"
    assert dict(spec.labels)[L.REPLICA] == "2"


def test_named_volumes_and_networks_get_run_scoped_names(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        networks:
          back: {internal: true}
        volumes:
          data: {}
        services:
          db:
            image: postgres:16
            networks: [back]
            volumes: ["data:/var/lib/postgresql/data"]
    """)
    p = make_plan(bp, IDENTITY, frozenset({"postgres:16"}), {}, capabilities=ALL)
    network, volume = p.step("network:back").payload, p.step("volume:data").payload
    assert isinstance(network, CreateNetwork) and isinstance(volume, CreateVolume)
    assert (network.spec.name, network.spec.internal) == ("envkit-shop-1-back", True)
    assert volume.spec.name == "envkit-shop-1-data"
    assert dict(volume.spec.labels)[L.RUN] == "shop-1"
    assert p.step("create:db-1").after == ("network:back", "volume:data")
    spec = create(p, "create:db-1").spec
    assert spec.mounts[0].source == "envkit-shop-1-data"


def test_gated_services_prestart_early_and_are_released_when_their_dependencies_are(
    load_text: Callable[..., Blueprint],
) -> None:
    bp = load_text("""
        services:
          db: {image: postgres}
          migrate: {image: app, kind: job, depends_on: [db]}
          api: {image: app, depends_on: {migrate: completed}}
          sidecar: {image: app, depends_on: {api: started}}
          plain: {image: app, prestart: false, depends_on: [db]}
    """)
    p = make_plan(bp, IDENTITY, frozenset({"postgres", "app"}), {}, capabilities=ALL)
    # Pre-started as soon as its dependency's container has started; its process waits for release.
    assert p.step("start:migrate-1").after == ("create:migrate-1", "start:db-1")
    assert p.step("release:migrate-1").after == ("start:migrate-1", "usable:db")
    assert p.step("complete:migrate-1").after == ("release:migrate-1",)
    assert p.step("usable:migrate").after == ("complete:migrate-1",)
    assert p.step("release:api-1").after == ("start:api-1", "usable:migrate")
    # "started" means the dependency's own process has begun: its release, not its gate.
    assert p.step("start:sidecar-1").after == ("create:sidecar-1", "release:api-1")
    assert "release:sidecar-1" not in {s.id for s in p.steps}  # only "started" conditions: nothing to gate
    # prestart: false keeps the plain order.
    assert p.step("start:plain-1").after == ("create:plain-1", "usable:db")
    assert create(p, "create:api-1").gate and not create(p, "create:plain-1").gate


UNGATED = """\
  create:migrate-1             create   envkit-shop-1-migrate-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:migrate-1              start    envkit-shop-1-migrate-1  after create:migrate-1, usable:db
                               (after db ready)
  complete:migrate-1           complete envkit-shop-1-migrate-1  after start:migrate-1
                               (job must exit 0)
  usable:migrate               usable   migrate  after complete:migrate-1
                               (every replica completed)
  create:api-1                 create   envkit-shop-1-api-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:api-1                  start    envkit-shop-1-api-1  after create:api-1, start:cache-1, usable:migrate
                               (after migrate completed, cache started)
  ready:api-1                  ready    envkit-shop-1-api-1  after start:api-1
                               (probe http 8080/health)
  usable:api                   usable   api  after ready:api-1
                               (every replica ready)"""


def test_an_engine_that_cannot_gate_gets_the_plain_start_order(shop: Blueprint) -> None:
    tags = {name: APP for name, svc in shop.services.items() if svc.build}
    p = make_plan(shop, IDENTITY, frozenset({"redis:7"}), tags, capabilities=ALL - {Capability.GATE})
    assert p.text().endswith("\n" + UNGATED)
    assert not any(isinstance(s.payload, CreateContainer) and s.payload.gate for s in p.steps)
    assert not any(isinstance(s.payload, StartContainer) and s.payload.gate for s in p.steps)
    assert "release:" not in p.text()


def test_started_waits_for_each_replica_to_start_and_ready_for_the_milestone(
    load_text: Callable[..., Blueprint],
) -> None:
    bp = load_text("""
        services:
          db: {image: app, replicas: 2}
          web: {image: app, prestart: false, depends_on: {db: started}}
          api: {image: app, prestart: false, depends_on: {db: ready}}
          job: {image: app, kind: job, replicas: 2, depends_on: {db: started}}
          report: {image: app, prestart: false, depends_on: {job: completed}}
    """)
    p = make_plan(bp, IDENTITY, frozenset({"app"}), {}, capabilities=ALL)
    assert p.step("start:web-1").after == ("create:web-1", "start:db-1", "start:db-2")
    assert p.step("start:api-1").after == ("create:api-1", "usable:db")
    assert p.step("usable:db").after == ("ready:db-1", "ready:db-2")
    assert p.step("usable:job").after == ("complete:job-1", "complete:job-2")
    assert p.step("start:report-1").after == ("create:report-1", "usable:job")
    assert [s.id for s in p.steps if s.action == "usable"] == [
        "usable:db", "usable:api", "usable:job", "usable:report", "usable:web"]
    assert p.step("usable:job").services == ("job",) and p.step("usable:job").replica is None
    assert p.step("ready:db-2").replica == 2


def test_step_text_comes_from_its_action_and_target_alone() -> None:
    step = Step("start:api-1", StartContainer("envkit-x-api-1"), "no dependencies", ("create:api-1",), ("api",), 1)
    assert step.text() == (
        "  start:api-1                  start    envkit-x-api-1  after create:api-1",
        "                               (no dependencies)",
    )
