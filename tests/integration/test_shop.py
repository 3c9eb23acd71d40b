"""The bundled shop blueprint on the real engine: ready, reachable from the host, isolated per run."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import psycopg
import pytest
import redis

import envkit
from envkit import labels as L
from envkit.backends import Backend

from .conftest import BLUEPRINTS, resources_of

SHOP = BLUEPRINTS / "shop"


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(predicate: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def shop() -> Any:
    with envkit.up(SHOP) as env:
        yield env


def test_every_service_is_ready_and_the_job_completed(shop: envkit.Environment) -> None:
    rows = {s.service: s for s in shop.status()}
    assert set(rows) == {"db", "cache", "payments", "api", "migrate", "worker"}
    assert rows["migrate"].ready == "completed"
    for name in ("db", "cache", "payments", "api", "worker"):
        assert rows[name].ready == "ready", rows[name]
        assert rows[name].state == "running"


def test_outputs_reach_the_services_from_the_host(shop: envkit.Environment) -> None:
    out = shop.outputs
    assert set(out) == {"API_URL", "DATABASE_URL", "REDIS_URL", "PAYMENTS_URL"}
    assert out["API_URL"] == f"http://127.0.0.1:{shop.port('api', 8080)}"
    status, order = http("POST", out["API_URL"] + "/orders", {"email": "ada@example.test", "amount_cents": 1234})
    assert status == 201, order
    # The worker takes the order from Redis and marks it fulfilled in PostgreSQL.
    wait_for(lambda: http("GET", f"{out['API_URL']}/orders/{order['id']}")[1]["status"] == "fulfilled")
    with psycopg.connect(out["DATABASE_URL"], connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT c.email, o.amount_cents, o.status FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.id = %s", (order["id"],)).fetchone()
    assert row == ("ada@example.test", 1234, "fulfilled")
    # The payment gateway's stub (kind: stub) was called for it, and captured it.
    charges = shop.stub("payments").journal("POST", "/charges")
    assert [(c.json()["order_id"], c.status) for c in charges] == [(order["id"], 201)]
    assert redis.Redis.from_url(out["REDIS_URL"], socket_timeout=5).ping() is True


def test_ports_are_published_on_loopback_only(shop: envkit.Environment) -> None:
    doc = shop.document()
    assert doc["schema"] == "envkit.run/v1"
    for service in doc["services"].values():
        for replica in service["replicas"]:
            for binding in replica["ports"].values():
                assert binding["host"] == "127.0.0.1"


def test_exec_and_logs_reach_into_a_service(shop: envkit.Environment) -> None:
    result = shop.exec("db", ["psql", "-U", "shop", "-tAc", "SELECT count(*) FROM orders"])
    assert result.exit_code == 0 and result.output.strip().isdigit()
    assert "migrat" in shop.logs("migrate").lower()


def test_only_starts_the_closure(backend: Backend) -> None:
    with envkit.up(SHOP, only=("worker",), seed=False) as env:  # the closure, not db's seeded rows
        assert sorted(env.services) == ["cache", "db", "migrate", "worker"]
        names = {c.labels[L.SERVICE] for c in backend.list_containers({L.RUN: env.run_id})}
        assert names == {"cache", "db", "migrate", "worker"}
        nets = {r.name for r in backend.list_resources({L.RUN: env.run_id}) if r.kind == "network"}
        assert nets == {f"envkit-{env.run_id}-backend"}  # nothing of the closure is on "edge"


def test_two_runs_at_once_are_isolated(backend: Backend) -> None:
    envs: list[envkit.Environment] = []
    errors: list[BaseException] = []

    def bring_up() -> None:
        try:  # unseeded: isolation is shown by this test's own rows (the fixture's shop is the seeded one)
            envs.append(envkit.up(SHOP, seed=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bring_up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        a, b = envs
        assert a.run_id != b.run_id
        assert a.outputs["API_URL"] != b.outputs["API_URL"]
        status, order = http("POST", a.outputs["API_URL"] + "/orders", {"email": "only-a@example.test", "amount_cents": 5})
        assert status == 201
        _, orders_a = http("GET", a.outputs["API_URL"] + "/orders")
        assert [o["id"] for o in orders_a if o["email"] == "only-a@example.test"] == [order["id"]]
        _, orders_b = http("GET", b.outputs["API_URL"] + "/orders")
        assert all(o["email"] != "only-a@example.test" for o in orders_b)
        with psycopg.connect(b.outputs["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM customers WHERE email = 'only-a@example.test'").fetchone() == (0,)
    finally:
        for env in envs:
            env.down()
    for env in envs:
        assert resources_of(backend, env.run_id) == []
