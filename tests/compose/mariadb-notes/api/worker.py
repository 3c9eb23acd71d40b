import os
import time

from common import cache, db

QUEUE = os.environ.get("QUEUE_NAME", "notes:new")

print("worker started", flush=True)
while True:
    try:
        item = cache().blpop(QUEUE, timeout=2)
        if item is None:
            continue
        note_id = int(item[1])
        with db() as conn, conn.cursor() as cur:
            cur.execute("SELECT body FROM notes WHERE id=%s", (note_id,))
            row = cur.fetchone()
            if row:
                cur.execute("REPLACE INTO processed VALUES (%s, %s)", (note_id, len(row[0].split())))
        print("worker processed", note_id, flush=True)
    except Exception as exc:
        print("worker error:", exc, flush=True)
        time.sleep(1)
