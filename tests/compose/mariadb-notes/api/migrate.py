"""A one-shot migration: adds an index if missing (idempotent)."""
from common import db

with db() as conn, conn.cursor() as cur:
    cur.execute("SHOW INDEX FROM notes WHERE Key_name='notes_created'")
    if not cur.fetchall():
        cur.execute("CREATE INDEX notes_created ON notes (created)")
print("migrations applied", flush=True)
