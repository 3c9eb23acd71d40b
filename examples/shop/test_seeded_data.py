"""The shop starts with realistic data (blueprints/shop/seed/): ~450 products loaded from a CSV file, and
10,000 customers with 100,000 orders generated in SQL. These tests read it through the API and the database."""

from __future__ import annotations

import csv
from pathlib import Path

import psycopg
from shop_client import Shop

CATALOGUE = Path(__file__).resolve().parents[2] / "blueprints" / "shop" / "seed" / "products.csv"


def _catalogue() -> list[dict[str, str]]:
    with CATALOGUE.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_catalogue_is_the_csv_file(shop: Shop) -> None:
    rows = _catalogue()
    status, products = shop.call("GET", "/products")
    assert status == 200
    assert {p["sku"]: (p["name"], p["category"], p["price_cents"]) for p in products} == {
        r["sku"]: (r["name"], r["category"], int(r["price_cents"])) for r in rows}
    assert any("," in p["name"] for p in products) and any('"' in p["name"] for p in products)  # CSV quoting held
    status, books = shop.call("GET", "/products?category=Books")
    assert status == 200 and books and {b["category"] for b in books} == {"Books"}


def test_every_seeded_customer_has_ten_orders(shop: Shop) -> None:
    with psycopg.connect(shop.outputs["DATABASE_URL"], connect_timeout=5) as conn:
        counts = conn.execute(
            "SELECT count(*) FROM (SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id "
            "WHERE c.email LIKE 'customer%%@example.test' GROUP BY c.id HAVING count(*) = 10) t").fetchone()
        seeded_orders = conn.execute("SELECT count(*) FROM orders WHERE id <= 100000").fetchone()
    assert counts is not None and counts[0] == 10_000
    assert seeded_orders is not None and seeded_orders[0] == 100_000


def test_a_seeded_order_is_served_by_the_api_with_its_items(shop: Shop) -> None:
    status, order = shop.call("GET", "/orders/4242")
    assert status == 200, order
    assert order["email"] == f"customer{1 + (4242 * 7919) % 10000:05d}@example.test"
    assert order["status"] == "fulfilled" and order["payment_id"] == "ch_seed_4242"
    with psycopg.connect(shop.outputs["DATABASE_URL"], connect_timeout=5) as conn:
        total = conn.execute("SELECT sum(quantity * unit_price_cents) FROM order_items WHERE order_id = 4242").fetchone()
    assert total is not None and total[0] == order["amount_cents"]


def test_a_seeded_customer_sums_up(shop: Shop) -> None:
    status, customer = shop.call("GET", "/customers/77")
    assert status == 200, customer
    assert customer["email"] == "customer00077@example.test"
    assert customer["orders"] == 10  # tests order as customers of their own (uuid e-mails)
    assert customer["spent_cents"] > 0
    assert shop.call("GET", "/customers/99999999")[0] == 404
