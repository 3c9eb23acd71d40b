"""The executor against the in-memory engine: order, parallel failure handling and the ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import pytest

from envkit.backends.base import Capability, ExecResult
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import BuildFailed, ServiceFailed
from envkit.events import Event
from envkit.execute import Executor
from envkit.handlers import HANDLERS
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.steps import PAYLOADS

IDENTITY = RunIdentity("r1", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
APP = "envkit/shop-app:0123abcd"
SHOP = """
    name: shop
    services:
      db:
        image: postgres:16
        ready: {exec: [pg_isready]}
      cache:
        image: redis:7
      migrate:
        kind: job
        build: ./app
        depends_on: [db]
      api:
        build: ./app
        replicas: 2
        depends_on:
          migrate: completed
          cache: started
      web:
        image: nginx:1
        depends_on: [api]
"""
DEPENDENCIES = {"migrate": ["db"], "api": ["migrate", "cache"], "web": ["api"]}


def container(service: str, replica: int = 1) -> str:
    return f"envkit-r1-{service}-{replica}"


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(SHOP, {"app/Dockerfile": "FROM python:3.12-slim\n"})


def make(bp: Blueprint, fake: FakeBackend, existing: frozenset[str] = frozenset()) -> Plan:
    tags = {name: APP for name, svc in bp.services.items() if svc.build}
    return make_plan(bp, IDENTITY, existing, tags, capabilities=fake.capabilities, engine=fake.name)


def fake_for_shop(gated: bool = True, capabilities: Iterable[Capability] | None = None) -> FakeBackend:
    fake = FakeBackend(capabilities=capabilities)
    fake.exit_codes["migrate"] = 0  # the job runs to completion as soon as its process begins
    if not gated:  # images without a shell: nothing is gated, dependants start late instead
        fake.no_shell.update({APP, "postgres:16", "redis:7"})
    return fake


def process_began(calls: list[tuple[str, str]], name: str) -> bool:
    """Whether a container's own process ever began (a gated container may run its gate only)."""
    gated = ("gate", name) in calls
    return ("release_container", name) in calls if gated else ("start_container", name) in calls


def began(calls: list[tuple[str, str]], name: str) -> int:
    """When a container's own process began: its release when it was gated, else its start."""
    if ("release_container", name) in calls:
        return calls.index(("release_container", name))
    return calls.index(("start_container", name))


def test_a_started_container_without_probe_or_healthcheck_is_ready_at_once(
    load_text: Callable[..., Blueprint],
) -> None:
    bp = load_text("services: {cache: {image: 'redis:7'}}")
    fake = FakeBackend(images={"redis:7"})
    ledger = Executor(fake).run(make(bp, fake, frozenset({"redis:7"})))
    assert fake.containers[ledger.containers[container("cache")]].status == "running"
    assert ("inspect_container", container("cache")) in fake.calls


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("attempt", range(5))  # parallel: run it a few times to shake out races
def test_a_dependant_never_starts_before_its_dependencies_are_ready_or_done(
    shop: Blueprint, attempt: int, gated: bool,
) -> None:
    fake = fake_for_shop(gated)
    Executor(fake).run(make(shop, fake))
    calls = fake.calls
    assert (("release_container", container("migrate")) in calls) is gated
    for service, deps in DEPENDENCIES.items():
        started = began(calls, container(service))
        for dep in deps:
            for replica in range(1, shop.services[dep].replicas + 1):
                dep_started = began(calls, container(dep, replica))
                assert dep_started < started, f"{service} started before {dep}"
                between = calls[dep_started:started]
                if dep in ("db", "api"):  # condition ready: a readiness check of the dependency came between
                    assert ("inspect_container", container(dep, replica)) in between
                if dep == "migrate":  # condition completed: the job's exit was seen in between
                    assert ("wait_container", container(dep, replica)) in between


def test_images_are_pulled_and_built_before_their_containers_are_created(shop: Blueprint) -> None:
    fake = fake_for_shop()
    Executor(fake).run(make(shop, fake))
    calls = fake.calls
    assert calls.count(("build_image", APP)) == 1
    assert calls.index(("build_image", APP)) < calls.index(("create_container", container("migrate")))
    assert calls.index(("pull_image", "postgres:16")) < calls.index(("create_container", container("db")))


def test_readiness_probes_run_against_the_container(shop: Blueprint) -> None:
    fake = fake_for_shop()
    Executor(fake).run(make(shop, fake))
    assert ("exec", container("db")) in fake.calls


def test_the_ledger_lists_every_resource_created(shop: Blueprint) -> None:
    fake = fake_for_shop()
    ledger = Executor(fake).run(make(shop, fake))
    names = sorted((kind, name) for kind, _, name in ledger.created)
    containers = ["api-1", "api-2", "cache-1", "db-1", "migrate-1", "web-1"]
    assert names == [("container", f"envkit-r1-{c}") for c in containers] + [("network", "envkit-r1-default")]
    assert set(ledger.containers) == {f"envkit-r1-{c}" for c in containers}
    assert set(ledger.containers.values()) == set(fake.containers)


def test_a_failing_job_stops_scheduling_and_names_the_job(shop: Blueprint) -> None:
    fake = fake_for_shop()
    fake.exit_codes["migrate"] = 3
    fake.log_text["migrate"] = "applying 0001\nrelation \"orders\" already exists\n"
    events: list[Event] = []
    with pytest.raises(ServiceFailed) as caught:
        Executor(fake, events.append).run(make(shop, fake))
    err = caught.value
    assert err.service == "migrate"
    assert err.reason == "job exited with code 3"
    assert err.log_tail == ("applying 0001", 'relation "orders" already exists')
    assert not process_began(fake.calls, container("api"))
    assert not process_began(fake.calls, container("web"))
    failed = [e for e in events if e.kind == "step" and e.phase == "failed"]
    assert [(e.action, e.service, e.replica) for e in failed] == [("complete", "migrate", 1)]
    assert failed[0].detail == "service migrate: job exited with code 3"


def test_a_dependency_that_exits_names_itself_not_the_service_waiting_for_it(shop: Blueprint) -> None:
    fake = fake_for_shop()
    fake.exit_codes["db"] = 1
    with pytest.raises(ServiceFailed) as caught:
        Executor(fake).run(make(shop, fake))
    assert caught.value.service == "db"
    assert caught.value.reason == "exited with code 1 before it was ready"
    assert caught.value.container == container("db")
    assert not process_began(fake.calls, container("migrate"))


def test_a_probe_that_cannot_run_fails_at_once(shop: Blueprint) -> None:
    fake = fake_for_shop()
    fake.exec_results["db"] = ExecResult(127, "pg_isready: not found")
    with pytest.raises(ServiceFailed, match=r"^service db: readiness probe \(exec pg_isready\) failed"):
        Executor(fake).run(make(shop, fake))


def test_a_log_probe_waits_for_its_line(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          db: {image: 'postgres:16', ready: {log: 'ready to accept connections', timeout: 5s}}
          api: {image: 'python:3', depends_on: [db]}
    """)
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.log_text["db"] = "starting\n"
    later = threading.Timer(0.2, fake.log_text.__setitem__, ("db", "starting\nready to accept connections\n"))
    later.start()
    Executor(fake).run(make(bp, fake, frozenset(fake.images)))
    later.join()
    checks = [i for i, call in enumerate(fake.calls) if call == ("logs", container("db"))]
    assert len(checks) > 1  # polled until the line appeared
    assert checks[-1] < began(fake.calls, container("api"))


def test_healthcheck_false_turns_the_images_healthcheck_off(load_text: Callable[..., Blueprint]) -> None:
    # A worker on the web image, whose HEALTHCHECK (of the web process) never passes in the worker
    bp = load_text("""
        services:
          worker: {image: 'app:1', ready: {healthcheck: false}}
          web: {image: 'app:1', depends_on: [worker]}
    """)
    fake = FakeBackend(images={"app:1"})
    fake.health["worker"] = "unhealthy"  # what the check would say, were it run
    ledger = Executor(fake).run(make(bp, fake, frozenset(fake.images)))
    worker = fake.containers[ledger.containers[container("worker")]]
    assert worker.spec.healthcheck_off and worker.health is None  # the engine runs no check in it
    assert process_began(fake.calls, container("web"))
    assert not fake.containers[ledger.containers[container("web")]].spec.healthcheck_off
    assert bp.services["worker"].ready is not None and bp.services["worker"].ready.describe() == (
        "none (the image's HEALTHCHECK turned off)")


def test_a_service_never_ready_fails_after_its_probe_timeout(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          db: {image: 'postgres:16', ready: {exec: [pg_isready], timeout: 300ms}}
          api: {image: 'python:3', depends_on: [db]}
    """)
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.exec_results["db"] = ExecResult(1, "no response")
    with pytest.raises(ServiceFailed) as caught:
        Executor(fake).run(make(bp, fake, frozenset(fake.images)))
    assert caught.value.service == "db"
    assert caught.value.reason.startswith("not ready after 300ms (probe: exec pg_isready; last result: exit 1")
    assert not process_began(fake.calls, container("api"))


def test_a_failing_build_names_the_services_using_the_image(shop: Blueprint) -> None:
    fake = fake_for_shop()
    fake.build_failures[APP] = "COPY failed: no such file requirements.txt"
    with pytest.raises(BuildFailed) as caught:
        Executor(fake).run(make(shop, fake))
    err = caught.value
    assert err.services == ("migrate", "api")
    assert err.reason == "COPY failed: no such file requirements.txt"
    assert err.log_tail[-1] == "error: COPY failed: no such file requirements.txt"
    assert str(err).startswith(f"service migrate, api: image build failed ({APP})")
    for service in ("migrate", "api", "web"):
        assert ("create_container", container(service)) not in fake.calls


def test_an_image_that_cannot_be_pulled_fails_the_services_using_it(shop: Blueprint) -> None:
    fake = fake_for_shop()
    fake.build_failures["nginx:1"] = "manifest unknown"
    with pytest.raises(BuildFailed) as caught:
        Executor(fake).run(make(shop, fake))
    assert caught.value.services == ("web",)
    assert "cannot be pulled" in caught.value.reason


def test_an_engine_that_cannot_gate_starts_dependants_in_order(shop: Blueprint) -> None:
    fake = fake_for_shop(capabilities={Capability.BUILD})  # the fake refuses create_gated_container without GATE
    Executor(fake).run(make(shop, fake))
    calls = fake.calls
    assert not any(method in ("create_gated_container", "release_container") for method, _ in calls)
    for service, deps in DEPENDENCIES.items():
        for dep in deps:
            assert began(calls, container(dep)) < began(calls, container(service)), f"{service} before {dep}"


def test_every_kind_of_step_has_a_handler() -> None:
    assert set(HANDLERS) == set(PAYLOADS)


def test_step_events_carry_typed_fields(shop: Blueprint) -> None:
    fake = fake_for_shop()
    events: list[Event] = []
    plan = make(shop, fake)
    Executor(fake, events.append).run(plan)
    steps = [e for e in events if e.kind == "step"]
    # every step starts once and ends once, paired by its id
    assert sorted(e.step for e in steps if e.phase == "start") == sorted(s.id for s in plan.steps)
    assert sorted(e.step for e in steps if e.phase == "done") == sorted(s.id for s in plan.steps)
    build = next(e for e in steps if e.action == "build" and e.phase == "start")
    assert (build.target, build.services, build.service, build.replica) == (APP, ("migrate", "api"), "", None)
    lines = [e for e in events if e.kind == "output"]
    assert lines and all(e.action == "build" and e.target == APP for e in lines)
    assert lines[0].detail == f"building {APP} from app/Dockerfile"
    ready = [(e.service, e.replica) for e in steps if e.action == "ready" and e.phase == "done"]
    assert sorted(ready) == [("api", 1), ("api", 2), ("cache", 1), ("db", 1), ("web", 1)]
    assert all(e.duration >= 0 for e in steps if e.phase == "done")
    created = [e for e in steps if e.action == "create" and e.phase == "done"]
    assert {e.detail for e in created} == {"gated", ""}
    assert {e.target for e in created if e.detail == "gated"} == {container("migrate"), container("api", 1),
                                                                  container("api", 2), container("web")}
    usable = [e.service for e in steps if e.action == "usable" and e.phase == "done"]
    assert sorted(usable) == ["api", "cache", "db", "migrate", "web"]


def test_a_dependant_waits_for_the_milestone_after_every_replica(shop: Blueprint) -> None:
    fake = fake_for_shop()
    events: list[Event] = []
    Executor(fake, events.append).run(make(shop, fake))
    order = [(e.step, e.phase) for e in events if e.kind == "step"]
    usable_api = order.index(("usable:api", "start"))
    assert order.index(("ready:api-1", "done")) < usable_api
    assert order.index(("ready:api-2", "done")) < usable_api
    assert order.index(("usable:api", "done")) < order.index(("release:web-1", "start"))


def test_the_longest_remaining_path_ranks_first(shop: Blueprint) -> None:
    """db's start leads the whole chain (db ready → migrate done → api ready → web): it outranks the
    start of cache, which nothing waits for beyond api's start."""
    from envkit.execute import ranks

    fake = fake_for_shop()
    plan = make(shop, fake)
    rank = ranks(plan.steps)
    assert rank["start:db-1"] > rank["create:migrate-1"] > rank["start:cache-1"] > rank["start:web-1"]
    for s in plan.steps:  # a step outranks every step that waits for it
        for a in s.after:
            assert rank[a] >= rank[s.id] + plan.step(a).payload.cost - 1e-9


@pytest.mark.parametrize("lanes", [1, 2])
def test_engine_lanes_bound_the_creates_and_starts_at_once_and_the_longest_path_goes_first(
    shop: Blueprint, lanes: int,
) -> None:
    fake = fake_for_shop()
    lock, busy, most, inner = threading.Lock(), [0], [0], threading.local()

    def counted(fn: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            if getattr(inner, "depth", 0):  # a gated create makes its container with create_container
                return fn(*args, **kwargs)
            inner.depth = 1
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            try:
                threading.Event().wait(0.01)  # long enough for the others to pile up
                return fn(*args, **kwargs)
            finally:
                inner.depth = 0
                with lock:
                    busy[0] -= 1
        return call

    for name in ("create_container", "create_gated_container", "start_container", "create_network"):
        setattr(fake, name, counted(getattr(fake, name)))
    Executor(fake, lanes=lanes).run(make(shop, fake))
    assert most[0] == lanes
    starts = [target for call, target in fake.calls if call == "start_container"]
    assert starts[0] == container("db")


@pytest.mark.parametrize("fails", [False, True])
def test_the_executor_settles_the_backend_once_its_steps_are_done(shop: Blueprint, fails: bool) -> None:
    # What a step left running behind it (the Docker gate's fallback file) is done before the run is
    # handed over, or rolled back.
    fake = fake_for_shop()
    if fails:
        fake.exit_codes["migrate"] = 3
    settled: list[int] = []
    fake.settle = lambda: settled.append(len(fake.calls))  # type: ignore[method-assign]
    executor = Executor(fake)
    if fails:
        with pytest.raises(ServiceFailed):
            executor.run(make(shop, fake))
    else:
        executor.run(make(shop, fake))
    assert settled == [len(fake.calls)]  # once, after the last call a step made


def test_a_read_only_service_is_not_gated_and_starts_once_its_dependency_is_ready(
        load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          db: {image: 'postgres:16', ready: {exec: [pg_isready]}}
          app: {image: 'app:1', read_only: true, depends_on: [db]}
    """)
    fake = FakeBackend(images={"postgres:16", "app:1"})
    Executor(fake).run(make(bp, fake, frozenset({"postgres:16", "app:1"})))
    assert ("gate", container("app")) not in fake.calls
    assert fake.calls.index(("start_container", container("app"))) > fake.calls.index(("exec", container("db")))
