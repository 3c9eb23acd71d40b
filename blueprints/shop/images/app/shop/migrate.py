"""Creates the shop's tables (idempotent), prints what it did, exits 0; non-zero with a message on failure.

    python3 -m shop.migrate

Waits up to SHOP_DB_WAIT seconds (default 10) for the database to accept connections. Concurrent runs
are serialised by an advisory lock, so two migrate jobs never race.
"""

import os
import sys

import psycopg2

from . import db
from .settings import DATABASE_URL

LOCK_KEY = 7_263_001  # arbitrary, shared by every shop.migrate


def _redacted(url: str) -> str:
    # postgresql://user:password@host/... -> postgresql://user:***@host/...
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def migrate() -> None:
    wait_s = float(os.environ.get("SHOP_DB_WAIT", "10"))
    conn = db.connect_with_retry(wait_s)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            for name, ddl in db.TABLES.items():
                cur.execute("SELECT to_regclass(%s)", (f"public.{name}",))
                existed = cur.fetchone()[0] is not None
                cur.execute(ddl)
                print(f"migrate: table {name}: {'already present' if existed else 'created'}")
            for name, ddl in db.INDEXES.items():
                cur.execute("SELECT to_regclass(%s)", (f"public.{name}",))
                existed = cur.fetchone()[0] is not None
                cur.execute(ddl)
                print(f"migrate: index {name}: {'already present' if existed else 'created'}")
    finally:
        conn.close()


def main() -> int:
    print(f"migrate: database {_redacted(DATABASE_URL)}")
    try:
        migrate()
    except psycopg2.Error as e:
        msg = str(e).strip() or type(e).__name__
        print(f"migrate: FAILED: {msg}", file=sys.stderr)
        return 1
    print("migrate: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
