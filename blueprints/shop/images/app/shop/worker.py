"""Fulfils paid orders: takes order ids from the Redis list `orders:queue` (BLPOP, 1 s timeout) and marks
each order `fulfilled` (fulfilled_at = now()) if it is still `pending`. One line per order to stdout.

    python3 -m shop.worker

Never exits on a transient error: on a Redis or database failure it logs, puts the order id back at the
head of the queue when it had taken one, sleeps briefly and reconnects.
"""

import contextlib
import time

import psycopg2
import redis

from . import db
from .settings import ORDER_QUEUE, redis_client

RETRY_SLEEP_S = 0.5


def fulfil(conn: "psycopg2.extensions.connection", order_id: int) -> str:
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            UPDATE orders SET status = 'fulfilled', fulfilled_at = now()
            WHERE id = %s AND status = 'pending' RETURNING id
            """,
            (order_id,),
        )
        if cur.fetchone():
            return f"worker: order {order_id} fulfilled"
        cur.execute("SELECT status FROM orders WHERE id = %s", (order_id,))
        row = cur.fetchone()
        if row is None:
            return f"worker: order {order_id} not found, skipped"
        return f"worker: order {order_id} is {row[0]}, skipped"


def run() -> None:
    r = redis_client()
    conn = None
    print(f"worker: waiting for orders on {ORDER_QUEUE}")
    while True:
        taken: bytes | None = None
        try:
            item = r.blpop([ORDER_QUEUE], timeout=1)
            if item is None:
                continue
            taken = item[1]
            try:
                order_id = int(taken)
            except ValueError:
                print(f"worker: dropping malformed queue entry {taken!r}")
                taken = None
                continue
            if conn is None or conn.closed:
                conn = db.connect()
            print(fulfil(conn, order_id))
            taken = None
        except (redis.RedisError, psycopg2.Error, OSError) as e:
            print(f"worker: {type(e).__name__}: {str(e).strip()}; retrying in {RETRY_SLEEP_S}s")
            if conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
                conn = None
            if taken is not None:
                try:
                    r.lpush(ORDER_QUEUE, taken)
                except redis.RedisError:
                    print(f"worker: could not requeue order {taken!r}")
            time.sleep(RETRY_SLEEP_S)


def main() -> None:
    run()


if __name__ == "__main__":
    main()
