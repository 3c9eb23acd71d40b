"""The shop answers, and its backing services are reachable from the tests."""

from __future__ import annotations

import psycopg
import redis
from shop_client import Shop


def test_the_api_is_healthy(shop: Shop) -> None:
    assert shop.call("GET", "/health") == (200, {"status": "ok"})


def test_the_backing_services_answer(shop: Shop) -> None:
    with psycopg.connect(shop.outputs["DATABASE_URL"], connect_timeout=5) as conn:
        assert conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone() == (True,)
    client = redis.Redis.from_url(shop.outputs["REDIS_URL"], socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert shop.call("GET", "/health", service="PAYMENTS_URL") == (200, {"status": "ok"})
