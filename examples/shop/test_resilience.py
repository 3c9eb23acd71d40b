"""The shop when its own parts fail: the worker is down, the database restarts, the network to the payment
gateway is flaky. Each test breaks the running shop with an envkit fault (docs/faults.md) and heals it,
also when the test fails, so the next test gets a whole shop again.

These tests stop and restart services of the shop they are given: run them on a shop of their own (the
default, also with `-n 2`), not on one shared by several xdist workers (`--envkit-shared`), whose other
tests would see the outage too. On an engine that cannot apply a fault (Docker Swarm cannot stop, kill or
proxy a task on another node, docs/swarm.md) the test is skipped with the engine's reason.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from shop_client import OUTPUTS, Shop, wait_for

import envkit
from envkit.errors import Unsupported
from envkit.faults.session import ActiveFault


def customer() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.test"  # tests may share one shop: never reuse a customer


def fault(env: envkit.Environment, service: str, kind: str, **params: Any) -> ActiveFault:
    """``env.fault(...)``, or the test skipped when the run's engine cannot apply that fault."""
    try:
        return env.fault(service, kind, **params)
    except Unsupported as exc:
        pytest.skip(str(exc))


def started_at(env: envkit.Environment, service: str) -> tuple[str, str | None]:
    """(container id, start time) of a service's replica: the same pair means it was not restarted."""
    container = env.info.services[service][0]
    return container.id, env.backend.inspect_container(container.id).started_at


def queued(shop: Shop) -> list[int]:
    client = redis.Redis.from_url(shop.outputs["REDIS_URL"], socket_timeout=5)
    try:
        return [int(item) for item in client.lrange("orders:queue", 0, -1)]
    finally:
        client.close()


def test_orders_queued_while_the_worker_is_down_are_fulfilled_when_it_is_back(shop: Shop,
                                                                            shop_env: envkit.Environment) -> None:
    with fault(shop_env, "worker", "kill"):
        wait_for(lambda: not shop_env.backend.inspect_container(shop_env.info.services["worker"][0].id).running)
        orders = []
        for amount in (300, 400, 500):
            status, order = shop.call("POST", "/orders", {"email": customer(), "amount_cents": amount})
            assert status == 201, order  # the API takes orders without its worker
            orders.append(order)
        ids = [o["id"] for o in orders]
        assert [i for i in queued(shop) if i in ids] == ids  # waiting in Redis, in order
        assert [shop.order_row(i)[2] for i in ids] == ["pending"] * 3  # type: ignore[index]
    # healed: the worker is started again and works through what queued up
    for order in orders:
        assert wait_for(lambda o=order: shop.order_row(o["id"]) == (o["email"], o["amount_cents"], "fulfilled"), 30)
    assert not set(ids) & set(queued(shop))


def test_the_api_survives_a_database_restart(shop: Shop, shop_env: envkit.Environment) -> None:
    api_before = started_at(shop_env, "api")
    with fault(shop_env, "db", "stop", grace="5s"):
        for method, path, body in (("GET", "/health", None), ("GET", "/orders", None),
                                   ("POST", "/orders", {"email": customer(), "amount_cents": 100})):
            start = time.monotonic()
            status, answer = shop.call(method, path, body)
            assert time.monotonic() - start < 5, (method, path)  # a clear error at once, not a hang
            assert status == 503, (method, path, answer)
            assert "database" in (answer.get("error") or answer.get("reason")), answer
    # db is back (a fresh start): the same API process serves again once PostgreSQL accepts connections
    wait_for(lambda: shop.call("GET", "/health")[0] == 200, 30)
    assert kept_outputs(shop, shop_env)
    email = customer()
    status, order = shop.call("POST", "/orders", {"email": email, "amount_cents": 2500})
    assert status == 201, order
    # the worker's long-lived connection broke with the restart: it reconnects and fulfils the order
    assert wait_for(lambda: shop.order_row(order["id"]) == (email, 2500, "fulfilled"), 30)
    assert started_at(shop_env, "api") == api_before


def kept_outputs(shop: Shop, env: envkit.Environment) -> bool:
    """The outputs read again are those the test began with (from the plugin or, under `envkit run`,
    from the environment): a stopped and started replica keeps its host ports (envkit chose them when it
    made the container), so DATABASE_URL and the rest stay valid."""
    env.refresh()
    assert {key: env.outputs[key] for key in OUTPUTS} == {key: shop.outputs[key] for key in OUTPUTS}
    return True


def flaky_checkouts(shop: Shop, env: envkit.Environment, seed: int, n: int = 8) -> list[tuple[int, str]]:
    """N orders while half of the API's connections to the payment gateway are reset (seeded): what the
    API answered each one."""
    answers = []
    with fault(env, "payments", "reset", peer="api", direction="upstream", probability=0.5, seed=seed):
        for _ in range(n):
            status, order = shop.call("POST", "/orders", {"email": customer(), "amount_cents": 900})
            answers.append((status, order.get("error", "").split(":")[0]))
            if status == 502:
                assert shop.order_row(order["id"])[2] == "payment_failed"  # type: ignore[index]
    return answers


def test_a_replayed_seeded_flaky_network_fails_the_same_way_twice(shop: Shop, shop_env: envkit.Environment) -> None:
    first = flaky_checkouts(shop, shop_env, seed=7)
    assert set(first) == {(201, ""), (502, "payments unreachable")}, first  # some reset, some not
    assert flaky_checkouts(shop, shop_env, seed=7) == first  # the same seed replays the same failures
    assert flaky_checkouts(shop, shop_env, seed=8) != first  # another seed, another pattern
