"""PostgreSQL access: connections, the schema and the order representation."""

import time
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extensions

from .settings import DATABASE_URL

TABLES = {
    "products": """
        CREATE TABLE IF NOT EXISTS products (
            id          serial PRIMARY KEY,
            sku         text UNIQUE NOT NULL,
            name        text NOT NULL,
            category    text NOT NULL,
            price_cents int NOT NULL CHECK (price_cents >= 0),
            stock       int NOT NULL DEFAULT 0
        )""",
    "customers": """
        CREATE TABLE IF NOT EXISTS customers (
            id    serial PRIMARY KEY,
            email text UNIQUE,
            name  text
        )""",
    "orders": """
        CREATE TABLE IF NOT EXISTS orders (
            id           serial PRIMARY KEY,
            customer_id  int REFERENCES customers,
            amount_cents int NOT NULL,
            status       text NOT NULL,
            payment_id   text,
            created_at   timestamptz DEFAULT now(),
            fulfilled_at timestamptz
        )""",
    "order_items": """
        CREATE TABLE IF NOT EXISTS order_items (
            order_id         int NOT NULL REFERENCES orders ON DELETE CASCADE,
            product_id       int NOT NULL REFERENCES products,
            quantity         int NOT NULL CHECK (quantity > 0),
            unit_price_cents int NOT NULL,
            PRIMARY KEY (order_id, product_id)
        )""",
}
INDEXES = {
    "orders_customer_id_idx": "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id)",
    "order_items_product_id_idx": "CREATE INDEX IF NOT EXISTS order_items_product_id_idx ON order_items (product_id)",
}

ORDER_COLUMNS = """
    o.id, c.email, o.amount_cents, o.status, o.payment_id, o.created_at, o.fulfilled_at
"""
ORDER_SELECT = f"SELECT {ORDER_COLUMNS} FROM orders o LEFT JOIN customers c ON c.id = o.customer_id"


def connect(timeout_s: int = 5) -> "psycopg2.extensions.connection":
    """A new connection (the caller closes it)."""
    return psycopg2.connect(DATABASE_URL, connect_timeout=timeout_s, application_name="shop")


_FINAL_ERRORS = ("authentication failed", "does not exist", "no pg_hba.conf entry")


def connect_with_retry(total_s: float) -> "psycopg2.extensions.connection":
    """Connect, retrying refused/unreachable connections for up to `total_s` seconds.

    Returns at once when the database answers; raises the last error when time runs out.
    """
    deadline = time.monotonic() + total_s
    while True:
        try:
            return connect()
        except psycopg2.OperationalError as e:
            # Wrong credentials or database: waiting will not help.
            if any(m in str(e) for m in _FINAL_ERRORS) or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def order_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ORDER_SELECT as the API's order object."""
    oid, email, amount_cents, status, payment_id, created_at, fulfilled_at = row
    return {
        "id": oid,
        "email": email,
        "amount_cents": amount_cents,
        "status": status,
        "payment_id": payment_id,
        "created_at": _iso(created_at),
        "fulfilled_at": _iso(fulfilled_at),
    }
