"""When the payment gateway misbehaves, the API answers a clear error at once (no hang) and the order is
left `payment_failed`. The gateway is a `kind: stub` service: each test makes its next answer bad."""

from __future__ import annotations

import time
import uuid

import pytest
from shop_client import Shop


@pytest.mark.parametrize(("how", "error"), [
    ({"status": 502}, "payments answered HTTP 502"),
    ({"status": 500, "json": {"error": "internal"}}, "payments answered HTTP 500"),
    ({"fault": "reset"}, "payments unreachable"),
    ({"fault": "empty"}, "payments unreachable"),
    ({"fault": "malformed_chunk"}, "payments unreachable"),
    ({"status": 201, "json": {"id": "ch_x"}, "fault": "malformed_json"}, "payments answered malformed JSON"),
    ({"status": 201, "json": {"status": "captured"}}, "payments answered without a charge id"),
])
def test_a_failing_gateway_gives_a_clear_error_and_a_failed_order(shop: Shop, how: dict[str, object],
                                                                  error: str) -> None:
    payments = shop.payments()
    payments.respond("POST", "/charges", responses=[how], times=1)
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    start = time.monotonic()
    status, order = shop.call("POST", "/orders", {"email": email, "amount_cents": 1500})
    assert time.monotonic() - start < 5  # answered, not hung until a timeout
    assert status == 502, order
    assert error in order["error"]
    assert shop.order_row(order["id"]) == (email, 1500, "payment_failed")
    # the gateway was asked exactly once for this order, and answered through the test's response
    mine = [c for c in payments.journal("POST", "/charges") if c.json()["order_id"] == order["id"]]
    assert [c.route for c in mine] == ["respond"]


def test_after_the_outage_orders_are_paid_again(shop: Shop) -> None:
    payments = shop.payments()
    payments.respond("POST", "/charges", status=503, times=2)
    results = [shop.call("POST", "/orders", {"email": f"{uuid.uuid4().hex[:12]}@example.test",
                                             "amount_cents": 700})[0] for _ in range(3)]
    assert results == [502, 502, 201]
