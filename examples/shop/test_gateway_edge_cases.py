"""The payment gateway is slow or speaks another dialect: the API answers at once with a clear error when
the gateway says nothing for longer than the shop waits (GATEWAY_TIMEOUT_S, 2 s in the blueprint), and reads
a charge time in another format, or refuses one it cannot read without guessing."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from shop_client import Shop

TIMEOUT_S = 2.0  # blueprints/shop: services.api.environment.GATEWAY_TIMEOUT_S


def order(shop: Shop) -> tuple[str, int, dict[str, object]]:
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    status, body = shop.call("POST", "/orders", {"email": email, "amount_cents": 1200})
    return email, status, body


def test_a_silent_gateway_gives_a_504_after_the_shops_timeout_not_a_hang(shop: Shop) -> None:
    payments = shop.payments()
    payments.respond("POST", "/charges", status=201, json={"id": "ch_late"}, delay=8, times=1)
    start = time.monotonic()
    email, status, body = order(shop)
    took = time.monotonic() - start
    assert status == 504, body
    assert body["error"] == f"payments did not answer within {TIMEOUT_S:g} s"
    assert TIMEOUT_S <= took < 8  # it waited its own timeout, not the gateway's 8 s
    assert shop.order_row(int(str(body["id"]))) == (email, 1200, "payment_failed")
    payments.assert_called("POST", "/charges", route="respond", times=1)


@pytest.mark.parametrize("created_at", ["{{now:rfc1123}}", "{{now:epoch}}", "{{now:%Y-%m-%d %H:%M:%S}}Z"])
def test_a_charge_time_in_another_format_is_read(shop: Shop, created_at: str) -> None:
    shop.payments().respond("POST", "/charges", status=201, times=1,
                            json={"id": "ch_{{request.id}}", "status": "captured", "created_at": created_at})
    _, status, body = order(shop)
    assert status == 201, body
    paid = dt.datetime.fromisoformat(str(body["paid_at"]).replace("Z", "+00:00"))
    assert str(body["paid_at"]).endswith("Z") and body["status"] == "pending"
    assert abs((paid - dt.datetime.now(dt.UTC)).total_seconds()) < 120  # the same clock, read right


def test_a_charge_time_that_could_be_two_days_is_refused_clearly(shop: Shop) -> None:
    shop.payments().respond("POST", "/charges", status=201, times=1,
                            json={"id": "ch_{{request.id}}", "created_at": "{{now:%d/%m/%Y}}"})
    email, status, body = order(shop)
    assert status == 502, body
    today = dt.datetime.now(dt.UTC).strftime("%d/%m/%Y")
    assert body["error"].startswith(f"payments answered created_at '{today}', a date in no format the shop reads")
    assert shop.order_row(int(str(body["id"]))) == (email, 1200, "payment_failed")
