"""The planner is pure: these tests compare its printed plan and the specs it hands the executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit import labels as L
from envkit.backends.base import PortBinding
from envkit.blueprint import Blueprint
from envkit.plan import Plan, RunIdentity, make_plan

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
  create:db-1                  create   envkit-shop-1-db-1  after image:postgres:16, network:default
                               (container of the run)
  start:db-1                   start    envkit-shop-1-db-1  after create:db-1
                               (no dependencies)
  ready:db-1                   ready    envkit-shop-1-db-1  after start:db-1
                               (probe exec pg_isready)
  create:migrate-1             create   envkit-shop-1-migrate-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:migrate-1              start    envkit-shop-1-migrate-1  after create:migrate-1, start:db-1
                               (pre-start behind the gate)
  release:migrate-1            release  envkit-shop-1-migrate-1  after start:migrate-1, ready:db-1
                               (after db ready)
  complete:migrate-1           complete envkit-shop-1-migrate-1  after release:migrate-1
                               (job must exit 0)
  create:api-1                 create   envkit-shop-1-api-1  after image:envkit/shop-app:0123abcd, network:default
                               (container of the run)
  start:api-1                  start    envkit-shop-1-api-1  after create:api-1, start:migrate-1, start:cache-1
                               (pre-start behind the gate)
  release:api-1                release  envkit-shop-1-api-1  after start:api-1, start:cache-1, complete:migrate-1
                               (after migrate completed, cache started)
  ready:api-1                  ready    envkit-shop-1-api-1  after release:api-1
                               (probe http 8080/health)"""


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(SHOP, FILES)


def plan(bp: Blueprint, existing: set[str] | None = None, only: tuple[str, ...] = ()) -> Plan:
    tags = {name: APP for name, svc in bp.services.items() if svc.build}
    return make_plan(bp, IDENTITY, frozenset(existing or {"redis:7"}), tags, only)


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
    assert builds[0].build is not None
    assert builds[0].build.context == shop.directory / "app"
    assert dict(builds[0].build.labels)[L.CONTEXT_HASH] == "0123abcd"


def test_container_specs_carry_the_run_labels(shop: Blueprint) -> None:
    spec = plan(shop).step("create:api-1").container
    assert spec is not None
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
    assert spec.networks == (("envkit-shop-1-default", ("api", "api-1")),)


def test_published_ports_default_to_the_loopback_address(shop: Blueprint) -> None:
    p = plan(shop)
    db, api = p.step("create:db-1").container, p.step("create:api-1").container
    assert db is not None and api is not None
    assert db.ports == (PortBinding(5432, "tcp", "127.0.0.1", None),)
    assert api.ports == (PortBinding(8080, "tcp", "127.0.0.1", 18080),)


def test_a_job_is_waited_for_to_complete_and_has_no_ready_step(shop: Blueprint) -> None:
    p = plan(shop)
    actions = {s.id: s.action for s in p.steps}
    assert actions["complete:migrate-1"] == "complete"
    assert "ready:migrate-1" not in actions
    spec = p.step("create:migrate-1").container
    assert spec is not None
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
    p = make_plan(bp, IDENTITY, frozenset({"busybox"}), {})
    # api waits for every replica: its container is pre-started, its process released after both are ready
    assert p.step("start:api-1").after == ("create:api-1", "start:worker-1", "start:worker-2")
    assert p.step("release:api-1").after == ("start:api-1", "ready:worker-1", "ready:worker-2")
    spec = p.step("create:worker-2").container
    assert spec is not None
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
    p = make_plan(bp, IDENTITY, frozenset({"postgres:16"}), {})
    network, volume = p.step("network:back"), p.step("volume:data")
    assert (network.target, network.internal) == ("envkit-shop-1-back", True)
    assert volume.target == "envkit-shop-1-data"
    assert dict(volume.labels)[L.RUN] == "shop-1"
    assert p.step("create:db-1").after == ("network:back", "volume:data")
    spec = p.step("create:db-1").container
    assert spec is not None
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
    p = make_plan(bp, IDENTITY, frozenset({"postgres", "app"}), {})
    # Pre-started as soon as its dependency's container has started; its process waits for release.
    assert p.step("start:migrate-1").after == ("create:migrate-1", "start:db-1")
    assert p.step("release:migrate-1").after == ("start:migrate-1", "ready:db-1")
    assert p.step("complete:migrate-1").after == ("release:migrate-1",)
    assert p.step("release:api-1").after == ("start:api-1", "complete:migrate-1")
    # "started" means the dependency's own process has begun: its release, not its gate.
    assert p.step("start:sidecar-1").after == ("create:sidecar-1", "release:api-1")
    assert "release:sidecar-1" not in {s.id for s in p.steps}  # only "started" conditions: nothing to gate
    # prestart: false keeps the plain order.
    assert p.step("start:plain-1").after == ("create:plain-1", "ready:db-1")
    assert p.step("create:api-1").gate and not p.step("create:plain-1").gate
