"""The shop's HTTP API on 0.0.0.0:8080 (JSON in, JSON out).

    GET  /health       200 {"status": "ok"}
                       503 {"status": "unavailable", "reason": "..."}  database down, no `orders` table
                                                                      (migrate not run) or Redis down
    POST /orders       {"email": str, "amount_cents": int, "name": str (optional)}
                       201 <order> + {"paid_at": ISO-8601 str | null}   charged, status "pending", queued
                                                            for the worker; paid_at: the gateway's
                                                            created_at (ISO 8601, an HTTP date or Unix
                                                            seconds), in ISO 8601 UTC
                       402 <order> + {"error": "payment declined"}   gateway declined, status "declined"
                       400 {"error": "..."}                 body not JSON / fields missing or mistyped
                       502 <order> + {"error": "..."}       gateway unreachable or odd answer (also a
                                                            created_at in another format), status
                                                            "payment_failed"
                       504 <order> + {"error": "..."}       gateway silent for GATEWAY_TIMEOUT_S,
                                                            status "payment_failed"
                       503 <order> + {"error": "..."}       charged but the queue (Redis) failed
                       503 {"error": "..."}                 database unavailable
    GET  /orders       200 [<order>, ...]   the latest 100, newest first
    GET  /orders/<id>  200 <order> | 404 {"error": "order not found"}
    GET  /products     200 [<product>, ...]  the catalogue, by id (?category=NAME: one category)
    GET  /customers/<id>  200 {"id", "email", "name", "orders": int, "spent_cents": int} | 404

    <order> = {"id": int, "email": str, "amount_cents": int, "status": str, "payment_id": str | null,
               "created_at": ISO-8601 str, "fulfilled_at": ISO-8601 str | null}

Order status: pending -> fulfilled (by shop.worker); or declined / payment_failed.
Each request uses a fresh database connection. One log line per request goes to stdout.
"""

import datetime as dt
import email.utils
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg2
import redis

from . import db
from .settings import GATEWAY_TIMEOUT_S, ORDER_QUEUE, PAYMENTS_URL, redis_client

PORT = int(os.environ.get("PORT", "8080"))
MAX_BODY = 1 << 20
ORDER_PATH = re.compile(r"^/orders/(\d{1,18})/?$")
CUSTOMER_PATH = re.compile(r"^/customers/(\d{1,18})/?$")

_redis = redis_client()


class BadRequest(Exception):
    pass


class PaymentError(Exception):
    status = 502


class GatewayTimeout(PaymentError):
    status = 504


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def health() -> tuple[int, dict[str, Any]]:
    try:
        conn = db.connect(timeout_s=2)
    except psycopg2.Error as e:
        return 503, {"status": "unavailable", "reason": f"database: {str(e).strip()}"}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
            cur.execute("SELECT to_regclass('public.orders')")
            if cur.fetchone()[0] is None:
                reason = "database: table orders missing (run shop.migrate)"
                return 503, {"status": "unavailable", "reason": reason}
    except psycopg2.Error as e:
        return 503, {"status": "unavailable", "reason": f"database: {str(e).strip()}"}
    finally:
        conn.close()
    try:
        _redis.ping()
    except redis.RedisError as e:
        return 503, {"status": "unavailable", "reason": f"redis: {e}"}
    return 200, {"status": "ok"}


def charge_time(value: object) -> str | None:
    """The gateway's ``created_at`` in ISO 8601 UTC: it may send ISO 8601, an HTTP date (RFC 1123) or Unix
    seconds; anything else (``04/03/2026``: which day is that?) is a PaymentError, not a guess."""
    if value is None:
        return None
    when = None
    if isinstance(value, str) and value.isascii() and value.isdigit():  # Unix seconds, as a string
        value = int(value)
    if _is_int(value) or isinstance(value, float):
        when = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
    if when is None or when.tzinfo is None:
        raise PaymentError(f"payments answered created_at {value!r}, a date in no format the shop reads "
                           "(ISO 8601 with a time zone, an HTTP date, Unix seconds)")
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def charge(order_id: int, amount_cents: int) -> tuple[bool, str | None, str | None]:
    """(True, charge id, paid at) when captured, (False, None, None) when declined; PaymentError otherwise."""
    body = json.dumps({"order_id": order_id, "amount_cents": amount_cents}).encode()
    req = urllib.request.Request(
        f"{PAYMENTS_URL}/charges", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=GATEWAY_TIMEOUT_S) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        if e.code == 402:
            return False, None, None
        raise PaymentError(f"payments answered HTTP {e.code}") from e
    except (TimeoutError, urllib.error.URLError) as e:
        if isinstance(e, TimeoutError) or isinstance(e.reason, TimeoutError):  # no answer, or no connection
            raise GatewayTimeout(f"payments did not answer within {GATEWAY_TIMEOUT_S:g} s") from e
        raise PaymentError(f"payments unreachable: {e!r}") from e
    except (OSError, http.client.HTTPException) as e:  # refused, reset, closed early, a broken chunk
        raise PaymentError(f"payments unreachable: {e!r}") from e
    try:
        answer = json.loads(raw or b"null")
    except ValueError as e:
        raise PaymentError(f"payments answered malformed JSON: {e}") from e
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise PaymentError("payments answered without a charge id")
    return True, answer["id"], charge_time(answer.get("created_at"))


def _fetch_order(cur: Any, order_id: int) -> dict[str, Any] | None:
    cur.execute(f"{db.ORDER_SELECT} WHERE o.id = %s", (order_id,))
    row = cur.fetchone()
    return db.order_json(row) if row else None


def create_order(req: object) -> tuple[int, dict[str, Any]]:
    if not isinstance(req, dict):
        raise BadRequest('expected a JSON object {"email": str, "amount_cents": int}')
    email, amount, name = req.get("email"), req.get("amount_cents"), req.get("name")
    if not isinstance(email, str) or not email.strip():
        raise BadRequest('"email" must be a non-empty string')
    if not _is_int(amount) or not -(2**31) <= amount < 2**31:
        raise BadRequest('"amount_cents" must be an integer')
    if name is not None and not isinstance(name, str):
        raise BadRequest('"name" must be a string')
    email = email.strip()

    conn = db.connect()
    try:
        # 1. The customer (upsert on email) and the order, committed before we call the gateway.
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO customers (email, name) VALUES (%s, %s) "
                "ON CONFLICT (email) DO UPDATE SET name = COALESCE(EXCLUDED.name, customers.name) "
                "RETURNING id",
                (email, name),
            )
            customer_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO orders (customer_id, amount_cents, status) VALUES (%s, %s, 'pending') RETURNING id",
                (customer_id, amount),
            )
            order_id = cur.fetchone()[0]

        # 2. The charge.
        try:
            captured, payment_id, paid_at = charge(order_id, amount)
        except PaymentError as e:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE orders SET status = 'payment_failed' WHERE id = %s", (order_id,))
                order = _fetch_order(cur, order_id)
            return e.status, {**order, "error": str(e)}  # type: ignore[dict-item]
        with conn, conn.cursor() as cur:
            if captured:
                cur.execute("UPDATE orders SET payment_id = %s WHERE id = %s", (payment_id, order_id))
            else:
                cur.execute("UPDATE orders SET status = 'declined' WHERE id = %s", (order_id,))
            order = _fetch_order(cur, order_id)
        assert order is not None
        if not captured:
            return 402, {**order, "error": "payment declined"}
    finally:
        conn.close()

    # 3. Hand it to the worker.
    try:
        _redis.rpush(ORDER_QUEUE, order_id)
    except redis.RedisError as e:
        return 503, {**order, "error": f"order paid but not queued: redis: {e}"}
    return 201, {**order, "paid_at": paid_at}


def get_order(order_id: int) -> tuple[int, dict[str, Any]]:
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            order = _fetch_order(cur, order_id)
    finally:
        conn.close()
    return (200, order) if order else (404, {"error": "order not found"})


def list_orders() -> tuple[int, list[dict[str, Any]]]:
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"{db.ORDER_SELECT} ORDER BY o.id DESC LIMIT 100")
            rows = cur.fetchall()
    finally:
        conn.close()
    return 200, [db.order_json(r) for r in rows]


def list_products(category: str | None) -> tuple[int, list[dict[str, Any]]]:
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            where = "WHERE category = %s" if category else ""
            cur.execute(f"SELECT id, sku, name, category, price_cents, stock FROM products {where} ORDER BY id",
                        (category,) if category else ())
            rows = cur.fetchall()
    finally:
        conn.close()
    keys = ("id", "sku", "name", "category", "price_cents", "stock")
    return 200, [dict(zip(keys, r, strict=True)) for r in rows]


def get_customer(customer_id: int) -> tuple[int, dict[str, Any]]:
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT c.id, c.email, c.name, count(o.id), coalesce(sum(o.amount_cents) FILTER "
                "(WHERE o.status IN ('pending', 'fulfilled')), 0) FROM customers c "
                "LEFT JOIN orders o ON o.customer_id = c.id WHERE c.id = %s GROUP BY c.id", (customer_id,))
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return 404, {"error": "customer not found"}
    return 200, {"id": row[0], "email": row[1], "name": row[2], "orders": row[3], "spent_cents": int(row[4])}


class Handler(BaseHTTPRequestHandler):
    server_version = "shop-api/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # one line per request, to stdout
        print(f"{self.address_string()} {format % args}", flush=True)

    def _send(self, status: int, payload: object) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, fn: Any, *args: Any) -> None:
        try:
            status, payload = fn(*args)
        except BadRequest as e:
            status, payload = 400, {"error": str(e)}
        except psycopg2.Error as e:
            status, payload = 503, {"error": f"database: {str(e).strip() or type(e).__name__}"}
        self._send(status, payload)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/health":
            self._dispatch(health)
        elif path in ("/products", "/products/"):
            category = urllib.parse.parse_qs(query).get("category", [None])[0]
            self._dispatch(list_products, category)
        elif m := CUSTOMER_PATH.match(path):
            self._dispatch(get_customer, int(m.group(1)))
        elif path in ("/orders", "/orders/"):
            self._dispatch(list_orders)
        elif m := ORDER_PATH.match(path):
            self._dispatch(get_order, int(m.group(1)))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(400, {"error": "bad Content-Length"})
            return
        raw = self.rfile.read(length) if length else b""
        if path not in ("/orders", "/orders/"):
            self._send(404, {"error": "not found"})
            return
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._send(400, {"error": "body is not valid JSON"})
            return
        self._dispatch(create_order, req)


def main() -> None:
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"api: listening on 0.0.0.0:{PORT} (payments at {PAYMENTS_URL})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
