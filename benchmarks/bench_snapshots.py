"""Snapshots and resets on the seeded shop (issue 11): up with seeding vs up from a snapshot, and reset
p50/p95 over N resets of the shop's database after a test wrote to it, for the PostgreSQL fast path
(template databases) and the generic path (restore from the snapshot).

The fast path is measured three ways, the same swap SQL each time (``envkit.pgtemplate``):

- ``template``: what ``env.reset`` does, through the ``psql`` it keeps in the container (``envkit.pgsession``);
- ``template_exec``: one ``docker exec`` of ``psql`` per reset (envkit's way before the kept session);
- ``template_host``: from this process over the published port with the shop role's own credentials
  (psycopg, the run's ``DATABASE_URL``; never printed), the other way considered.

The generic path is measured as envkit does it now (``restore``: the old container removed while its
replacement is made, see ``envkit.restore``) and as it did before (``restore_before``: removed, then
made again by an executor plan of restore, create, start and ready steps, the run described each
time), the two alternating reset by reset so that both see the same load (with ``--variant volume`` one
block each, the way before first: see the comment in ``main``). ``--variant volume`` runs the
whole benchmark on a db image that declares its data directory a ``VOLUME`` (as the official postgres
image does): the snapshot then holds a volume, which every restore fills again.

The shop is copied to a temporary folder with a token of this run in db's environment, so that the
snapshot key is this benchmark's own: a snapshot of the shop that other processes on the engine use is
never removed.

Each reset follows a "test" that wrote 1,000 orders (and a count that checks the reset). The
``back_to_back`` figure writes through a host connection instead (milliseconds), so resets come faster
than PostgreSQL can copy the next ready database: it shows the bound of the ready-copy pool.

    .venv/bin/python benchmarks/bench_snapshots.py [--resets 100] [--ups 3] [--json out.json]

The snapshot this makes is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import envkit  # noqa: E402
from envkit import labels as L  # noqa: E402
from envkit import snapshots as S  # noqa: E402
from envkit.backends import connect  # noqa: E402
from envkit.backends.base import Backend, PortBinding  # noqa: E402
from envkit.capture import postgres_of  # noqa: E402
from envkit.execute import Executor  # noqa: E402
from envkit.images import image_tag  # noqa: E402
from envkit.pgtemplate import old_name, ready_name, template_name  # noqa: E402
from envkit.plan import Plan, RunIdentity, make_plan  # noqa: E402
from envkit.runs import describe  # noqa: E402
from envkit.steps import CreateContainer, Step  # noqa: E402

SHOP = ROOT / "blueprints" / "shop"


def private_shop(folder: Path, variant: str) -> Path:
    """The shop, with a token of this run in db's environment (its own snapshot key); ``volume``: its db
    image declares the data directory a VOLUME."""
    shutil.copytree(SHOP, folder / "shop")
    text = (folder / "shop" / "blueprint.yaml").read_text(encoding="utf-8")
    text = text.replace('environment: {POSTGRES_PASSWORD: "${DB_PASSWORD:-shop}"}',
                        f'environment: {{POSTGRES_PASSWORD: "${{DB_PASSWORD:-shop}}", BENCH_TOKEN: "{secrets.token_hex(6)}"}}')
    assert "BENCH_TOKEN" in text
    (folder / "shop" / "blueprint.yaml").write_text(text, encoding="utf-8")
    if variant == "volume":
        with (folder / "shop" / "images" / "postgres" / "Dockerfile").open("a", encoding="utf-8") as fh:
            fh.write("\nVOLUME /var/lib/postgresql/data\n")
    return folder / "shop"


class Parts:
    """The parts of each restore (``envkit.restore``'s timings, as the reset's done event tells them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def hear(self, event: envkit.Event) -> None:
        if event.action == "reset" and event.phase == "done" and ": " in event.message:
            for item in event.message.rsplit(": ", 1)[1].rstrip(")").split(", "):
                part, _, value = item.partition(" ")
                self.seconds.setdefault(part, []).append(float(value.rstrip("s")))


def restore_before(backend: Backend, env: envkit.Environment) -> None:
    """The generic reset as envkit did it before ``envkit.restore`` (kept here to measure the ratio in
    one run): the run described, the old container removed, then an executor plan of the restore
    (into the run's volume, in place), create, start and ready steps."""
    info = describe(backend, env.run_id)
    old = info.replicas("db")[0]
    snap = S.find(backend, old.labels[L.SNAPSHOT])
    assert snap is not None and env.blueprint is not None
    bp, labels = env.blueprint, old.labels
    identity = RunIdentity(info.run_id, labels.get(L.OWNER, ""), labels.get(L.CREATED_AT, ""), labels.get(L.VERSION, ""))
    closure = bp.closure(("db",))
    tags = {s: image_tag(bp.name, bp.services[s].build) for s in closure if bp.services[s].build}  # type: ignore[arg-type]
    every = frozenset(tags.values()) | {str(bp.services[s].image) for s in closure} | {snap.image}
    plan = make_plan(bp, identity, every, tags, ("db",), capabilities=backend.capabilities, engine=backend.name,
                     snapshots={"db": S.Use(snap.key, snapshot=snap)})
    steps = [s for s in plan.steps if s.services == ("db",) and s.action in ("restore", "create", "start", "ready")]
    ids = {s.id for s in steps}
    fixed: list[Step] = []
    for s in steps:
        payload = s.payload
        if isinstance(payload, CreateContainer):
            ports = tuple(PortBinding(p.container, p.host_ip, old.ports[p.container].port if p.container in old.ports
                                      else p.host_port) for p in payload.spec.ports)
            payload = replace(payload, spec=replace(payload.spec, labels=tuple(sorted(labels.items())), ports=ports),
                              gate=False)
        fixed.append(replace(s, payload=payload, after=tuple(a for a in s.after if a in ids)))
    backend.remove_container(old.id, 0)
    Executor(backend).run(Plan(info.run_id, identity, bp, ("db",), tuple(fixed)))
    env.refresh()  # as env.reset does: the next call finds the new container


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_orders(env: envkit.Environment, n: int) -> None:
    sql = (f"INSERT INTO orders (customer_id, amount_cents, status) SELECT 1, g, 'pending' "
           f"FROM generate_series(1, {n}) g;")
    result = env.exec("db", ["psql", "-X", "-q", "-U", "shop", "-d", "shop", "-c", sql])
    assert result.exit_code == 0, result.output


def count_orders(env: envkit.Environment) -> int:
    out = env.exec("db", ["psql", "-X", "-At", "-U", "shop", "-d", "shop", "-c", "SELECT count(*) FROM orders"])
    return int(out.output.strip())


class HostSwap:
    """The fast path's swap and refill over host connections (the alternative measured, not envkit's):
    the statements of ``envkit.pgtemplate``'s scripts, the same advisory lock, as the shop's own role
    (not a superuser: it may end only its own role's sessions, so autovacuum workers are left to
    PostgreSQL, which ends them itself before a rename)."""

    def __init__(self, url: str, db: str) -> None:
        admin = url.rsplit("/", 1)[0] + "/postgres"
        self.swap_conn = psycopg.connect(admin, autocommit=True)
        self.fill_conn = psycopg.connect(admin, autocommit=True)
        self.db, self.ready, self.tpl = db, ready_name(db), template_name(db)
        self.requests: queue.Queue[bool] = queue.Queue()  # the refills to make, in order (False: stop)
        self.filler = threading.Thread(target=self.fills, daemon=True)
        self.filler.start()

    def exists(self, cur: psycopg.Cursor[tuple[object, ...]], name: str) -> bool:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None

    def reset(self) -> None:
        db, ready, old = (f'"{n}"' for n in (self.db, self.ready, old_name(self.db, secrets.token_hex(4))))
        with self.swap_conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(1701147493, 1)")  # waits for a refill still copying
            try:
                cur.execute(f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")
                cur.execute("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = %s "
                            "AND backend_type = 'client backend'", (self.db,))
                if self.exists(cur, self.ready):
                    with self.swap_conn.transaction():
                        cur.execute(f"ALTER DATABASE {db} RENAME TO {old}")
                        cur.execute(f"ALTER DATABASE {ready} RENAME TO {db}")
                        cur.execute(f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")
                else:
                    cur.execute(f"DROP DATABASE {db}")
                    cur.execute(f'CREATE DATABASE {db} TEMPLATE "{self.tpl}" STRATEGY FILE_COPY')
            finally:
                cur.execute("SELECT pg_advisory_unlock(1701147493, 1)")
        self.requests.put(True)

    def fills(self) -> None:
        while self.requests.get():
            self.fill()

    def fill(self) -> None:
        with self.fill_conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(1701147493, 1)")
            try:
                if not self.exists(cur, self.ready):
                    cur.execute(f'CREATE DATABASE "{self.ready}" TEMPLATE "{self.tpl}" STRATEGY FILE_COPY')
                    cur.execute(f'ALTER DATABASE "{self.ready}" WITH ALLOW_CONNECTIONS false')
            finally:
                cur.execute("SELECT pg_advisory_unlock(1701147493, 1)")
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'envkit\\_old\\_%'")
            for (name,) in cur.fetchall():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def close(self) -> None:
        self.requests.put(False)
        self.filler.join()
        self.swap_conn.close()
        self.fill_conn.close()


def write_orders_host(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO orders (customer_id, amount_cents, status) SELECT 1, g, 'pending' "
                     "FROM generate_series(1, %s) g", (n,))


def stats(times: list[float]) -> dict[str, float]:
    return {"n": len(times), "p50": pct(times, 0.5), "p95": pct(times, 0.95), "min": min(times), "max": max(times),
            "over_100ms": sum(t > 0.1 for t in times)}


def show(what: str, times: list[float]) -> None:
    print(f"{what} over {len(times)}: p50 {pct(times, 0.5) * 1000:.0f} ms, p95 {pct(times, 0.95) * 1000:.0f} ms, "
          f"{sum(t > 0.1 for t in times)} over 100 ms (load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resets", type=int, default=100)
    ap.add_argument("--generic-resets", type=int, default=20)
    ap.add_argument("--back-to-back", type=int, default=30)
    ap.add_argument("--ways", default="template,template_exec,template_host,restore,restore_before",
                    help="which reset ways to measure (comma-separated)")
    ap.add_argument("--variant", choices=("image", "volume"), default="image",
                    help="volume: db's image declares its data directory a VOLUME (the snapshot holds a volume)")
    ap.add_argument("--ups", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    backend = connect()
    folder = Path(tempfile.mkdtemp(prefix="envkit-bench-snapshots-"))
    shop = private_shop(folder, args.variant)
    result: dict[str, object] = {"loadavg_start": os.getloadavg()[0], "variant": args.variant}
    seeded, from_snapshot = [], []
    key = ""
    try:
        for i in range(args.ups):
            if key:
                S.remove(backend, key)  # every seeded up must miss
            began = time.monotonic()
            with envkit.up(shop, snapshot=["db"], backend=backend) as env:
                seeded.append(time.monotonic() - began)
                key = env.info.replicas("db")[0].labels[L.SNAPSHOT]
            print(f"up with seeding + capture #{i + 1}: {seeded[-1]:.2f}s", flush=True)
        plain = []
        for i in range(args.ups):
            began = time.monotonic()
            with envkit.up(shop, snapshot=False, backend=backend):
                plain.append(time.monotonic() - began)
            print(f"up with seeding (no snapshot) #{i + 1}: {plain[-1]:.2f}s", flush=True)
        for i in range(args.ups):
            began = time.monotonic()
            with envkit.up(shop, snapshot=["db"], backend=backend):
                from_snapshot.append(time.monotonic() - began)
            print(f"up from snapshot #{i + 1}: {from_snapshot[-1]:.2f}s", flush=True)
        if args.ups:
            result["up"] = {"seeded_no_snapshot_median": statistics.median(plain),
                            "seeded_and_capture_median": statistics.median(seeded),
                            "from_snapshot_median": statistics.median(from_snapshot),
                            "ratio": statistics.median(from_snapshot) / statistics.median(plain)}
        with envkit.up(shop, snapshot=["db"], backend=backend) as env:
            key = env.info.replicas("db")[0].labels[L.SNAPSHOT]
            seeded_count = count_orders(env)
            base = []
            for _ in range(20):  # what one `docker exec` of psql costs here: the floor of the fast path
                began = time.monotonic()
                env.exec("db", ["psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
                base.append(time.monotonic() - began)
            result["exec_psql_select_1"] = {"p50": pct(base, 0.5), "p95": pct(base, 0.95)}
            print(f"one exec of psql (SELECT 1): p50 {pct(base, 0.5) * 1000:.0f} ms", flush=True)
            url = env.outputs["DATABASE_URL"]
            snap = S.find(backend, env.info.replicas("db")[0].labels[L.SNAPSHOT])
            assert snap is not None
            pg, databases = postgres_of(snap) or (None, [])
            assert pg is not None
            host = HostSwap(url, "shop")
            db_id = env.info.replicas("db")[0].id
            ways = {
                "template": lambda: env.reset("db"),
                "template_exec": lambda: pg.reset(backend, db_id, databases),
                "template_host": host.reset,
                "restore": lambda: env.reset("db", path="restore", on_event=parts.hear),
            }
            parts = Parts()
            chosen = args.ways.split(",")
            try:
                for way, fn in ways.items():
                    if way not in chosen or way == "restore_before":
                        continue
                    n = args.generic_resets if way == "restore" else args.resets
                    # The generic path now and before, alternating: the same load for both.
                    group = {way: fn, "restore_before": lambda: restore_before(backend, env)} \
                        if way == "restore" and "restore_before" in chosen else {way: fn}
                    times: dict[str, list[float]] = {w: [] for w in group}
                    loads: dict[str, list[float]] = {w: [] for w in group}
                    # With volumes, the way before fills the run's volume in place (emptying it first) only in
                    # a steady state of its own: after a reset of the new way it would find a new volume. So
                    # there, one block each (the way before first).
                    rounds = [list(group.items())] * n if args.variant == "image" else \
                        [[item] for item in reversed(group.items()) for _ in range(n)]
                    for round_ in rounds:
                        for w, f in round_:
                            write_orders(env, 1000)
                            began = time.monotonic()
                            f()
                            times[w].append(time.monotonic() - began)
                            assert count_orders(env) == seeded_count
                            loads[w].append(os.getloadavg()[0])
                    for w, ts in times.items():
                        result[f"reset_{w}"] = stats(ts) | {"load": statistics.median(loads[w]),
                                                            "load_min": min(loads[w]), "load_max": max(loads[w])}
                        show(f"reset ({w})", ts)
                    if way == "restore" and parts.seconds:
                        result["reset_restore_parts_p50"] = {k: pct(v, 0.5) for k, v in parts.seconds.items()}
                        print("restore, p50 of each part:", ", ".join(f"{k} {pct(v, 0.5):.2f}s"
                                                                     for k, v in parts.seconds.items()), flush=True)
                    if len(group) == 2:
                        result["restore_ratio_p50"] = pct(times["restore"], 0.5) / pct(times["restore_before"], 0.5)
                b2b: list[float] = []
                env.reset("db")
                for _ in range(args.back_to_back):
                    write_orders_host(url, 1000)
                    began = time.monotonic()
                    env.reset("db")
                    b2b.append(time.monotonic() - began)
                if b2b:
                    result["reset_template_back_to_back"] = stats(b2b) | {"load": os.getloadavg()[0]}
                    show("reset (template, back to back)", b2b)
                assert count_orders(env) == seeded_count
            finally:
                host.close()
    finally:
        if key:
            S.remove(backend, key)
        shutil.rmtree(folder, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
