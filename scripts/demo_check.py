"""The demo's check, run by `envkit run` with the shop's outputs in the environment."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

import psycopg

from envkit.stubs.client import StubClient


def call(method: str, url: str, body: dict[str, object] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    run = os.environ["ENVKIT_RUN"]
    print(f"\nrun {run} — outputs handed to this process:")
    for key in ("API_URL", "DATABASE_URL", "REDIS_URL", "PAYMENTS_URL"):
        print(f"  {key}={os.environ[key]}")
    api = os.environ["API_URL"]
    print(f"\nGET {api}/health ->", call("GET", api + "/health"))
    order = call("POST", api + "/orders", {"email": "demo@example.test", "amount_cents": 4200})
    assert isinstance(order, dict)
    print(f"POST {api}/orders ->", order)
    deadline = time.monotonic() + 10
    while (status := call("GET", f"{api}/orders/{order['id']}")["status"]) != "fulfilled":  # type: ignore[index]
        if time.monotonic() > deadline:
            print(f"order {order['id']} still {status} after 10 s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT status, payment_id FROM orders WHERE id = %s", (order["id"],)).fetchone()
        seeded = conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                              "(SELECT count(*) FROM products)").fetchone()
    print(f"SQL: order {order['id']} is {row[0]} (payment {row[1]}) in PostgreSQL")
    print(f"SQL: seeded data: {seeded[0]} customers, {seeded[1]} orders, {seeded[2]} products")
    products = call("GET", api + "/products?category=Books")
    print(f"GET {api}/products?category=Books -> {len(products)} books")  # type: ignore[arg-type]
    # The payment gateway is a `kind: stub` service: its journal holds what the API sent it.
    payments = StubClient.from_url(os.environ["PAYMENTS_URL"], "payments")
    charges = [c.json() for c in payments.journal("POST", "/charges") if c.status == 201]
    print(f"payment stub captured {len(charges)} charge(s): {charges}")
    ok = row[0] == "fulfilled" and any(c["order_id"] == order["id"] for c in charges)
    ok = ok and seeded[0] >= 10_000 and seeded[1] > 100_000 and seeded[2] > 0
    print("\ndemo check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
