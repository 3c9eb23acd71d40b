"""An order's way through the shop: API -> payments stub -> PostgreSQL -> Redis queue -> worker."""

from __future__ import annotations

import uuid

import redis
from shop_client import Shop, wait_for


def customer() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.test"  # tests may share one shop: never reuse a customer


def test_a_paid_order_is_fulfilled_by_the_worker(shop: Shop) -> None:
    email = customer()
    status, order = shop.call("POST", "/orders", {"email": email, "amount_cents": 1250})
    assert status == 201, order
    assert order["status"] == "pending"
    # The worker takes the order from Redis and marks it fulfilled in PostgreSQL.
    assert wait_for(lambda: shop.order_row(order["id"]) == (email, 1250, "fulfilled"))
    _, seen = shop.call("GET", f"/orders/{order['id']}")
    assert seen["fulfilled_at"] is not None
    client = redis.Redis.from_url(shop.outputs["REDIS_URL"], socket_timeout=5)
    try:
        assert str(order["id"]).encode() not in client.lrange("orders:queue", 0, -1)
    finally:
        client.close()


def test_the_payment_stub_is_charged(shop: Shop) -> None:
    status, order = shop.call("POST", "/orders", {"email": customer(), "amount_cents": 990})
    assert status == 201, order
    status, charges = shop.call("GET", "/charges", service="PAYMENTS_URL")
    assert status == 200
    mine = [c for c in charges if c["order_id"] == order["id"]]
    assert mine == [{"id": order["payment_id"], "status": "captured", "order_id": order["id"], "amount_cents": 990}]


def test_a_declined_payment_leaves_the_order_declined(shop: Shop) -> None:
    email = customer()
    status, order = shop.call("POST", "/orders", {"email": email, "amount_cents": 0})
    assert status == 402, order
    assert order["error"] == "payment declined"
    assert shop.order_row(order["id"]) == (email, 0, "declined")
    _, charges = shop.call("GET", "/charges", service="PAYMENTS_URL")
    assert all(c["order_id"] != order["id"] for c in charges)
