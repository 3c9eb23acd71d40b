"""An order's way through the shop: API -> payment gateway stub -> PostgreSQL -> Redis queue -> worker."""

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
    mine = [c for c in shop.payments().journal("POST", "/charges") if c.json()["order_id"] == order["id"]]
    assert [(c.json(), c.status, c.route) for c in mine] == [({"order_id": order["id"], "amount_cents": 990}, 201,
                                                              "captured")]
    assert order["payment_id"].startswith("ch_")


def test_a_declined_payment_leaves_the_order_declined(shop: Shop) -> None:
    email = customer()
    status, order = shop.call("POST", "/orders", {"email": email, "amount_cents": 0})
    assert status == 402, order
    assert order["error"] == "payment declined"
    assert shop.order_row(order["id"]) == (email, 0, "declined")
    mine = [c for c in shop.payments().journal("POST", "/charges") if c.json()["order_id"] == order["id"]]
    assert [(c.status, c.route) for c in mine] == [(402, "declined")]
