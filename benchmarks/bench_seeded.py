"""Seeded environments against Docker Compose v5 seeding the way most Compose users do (issue 11).

    .venv/bin/python benchmarks/bench_seeded.py [--pairs 1] [--scales 1,8] [--out benchmarks/results]

Compose users seed a database through the image: an image that, like the official postgres image,
initialises its data directory (a declared VOLUME) at first start and runs the scripts mounted into
``/docker-entrypoint-initdb.d`` (benchmarks/initdb/postgres). Two topologies, both the shop with its db
service swapped for that image, written to a work folder and exported (``envkit export --format
compose``) so that both tools start the same images:

    initdb   initdb.d holds the shop's schema only (from the app's own DDL): what first-start
             initialisation costs each tool. envkit runs the same image (its entrypoint initialises).
    seeded   initdb.d also holds the shop's seed SQL (catalogue.sql, orders.sql) and products.csv: the
             same 100,000 orders envkit's shop seeds; Compose only.

Measured, each as CLI processes started at once (1 and 8 environments), wall time until all have exited:

    initdb:  envkit up TOPO      vs  compose up -d --wait                      (ratio envkit/Compose)
    seeded:  envkit up blueprints/shop --no-snapshot   (seeds run)
             envkit up blueprints/shop --snapshot      (from the snapshot the warm-up captured)
             compose up -d --wait on the seeded topology                    (ratios snapshot/seeded, /Compose)
    the Compose user's own seeded topology, in envkit (docs/snapshots.md: initdb scripts count as seeds):
             envkit up SEEDED --no-snapshot            (the image runs the initdb scripts, as under Compose)
             envkit up SEEDED --snapshot               (from the snapshot of the initialised data directory)

Before measuring, two processes in two different folders (copies of blueprints/shop) compute the db's
snapshot key; they must agree with each other and with the snapshot the warm-up captured. The snapshot
is removed at the end unless it was on the engine before. Cleanup as in bench.py (one prefix, always).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envkit.errors import EnvkitError  # noqa: E402
from envkit.signals import sigterm_as_interrupt  # noqa: E402


def _bench_module() -> types.ModuleType:
    """bench.py beside this file, by path: under pytest, tests/benchmarks shadows a package named benchmarks."""
    if "envkit_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("envkit_bench", Path(__file__).with_name("bench.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # before it runs: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["envkit_bench"]


bench_module = _bench_module()
SETTLE, Bench = bench_module.SETTLE, bench_module.Bench
BenchError, ToolMissing = bench_module.BenchError, bench_module.ToolMissing
compose_version, find_compose, find_envkit = bench_module.compose_version, bench_module.find_compose, bench_module.find_envkit
SHOP = ROOT / "blueprints" / "shop"
IMAGE = ROOT / "benchmarks" / "initdb" / "postgres"
TARGETS = {"snapshot_vs_seeded": 0.35, "snapshot_vs_compose_1": 0.3, "snapshot_vs_compose_8": 0.4}
KEY_CODE = """\
import json, sys
from envkit import snapshots as S, snapshot_plan as P
from envkit.backends import connect
from envkit.blueprint import load
bp = load(".", {})
print(json.dumps(S.service_keys(bp, P.image_ids(connect(), bp, bp.closure(("db",))), ["db"])["db"]))
"""


def shop_schema() -> str:
    """The shop's tables and indexes as SQL, from the app's own DDL (shop/db.py; psycopg2 is not needed)."""
    stub = types.ModuleType("psycopg2")
    stub.extensions = types.ModuleType("psycopg2.extensions")  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("psycopg2", "psycopg2.extensions", "shop", "shop.db", "shop.settings")}
    sys.modules.update({"psycopg2": stub, "psycopg2.extensions": stub.extensions})  # type: ignore[attr-defined]
    sys.path.insert(0, str(SHOP / "images" / "app"))
    try:
        import shop.db as db

        statements = [*db.TABLES.values(), *db.INDEXES.values()]
    finally:
        sys.path.pop(0)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return "".join(f"{s.strip()};\n" for s in statements)


def topology(work: Path, name: str, seeded: bool) -> Path:
    """The shop with db swapped for the initdb image, in a folder of its own (the shop's images copied in:
    same content, same image tags); initdb.d (and /tmp/products.csv) bind-mounted from beside it."""
    folder = work / name
    shutil.copytree(SHOP / "images", folder / "images")
    shutil.copytree(IMAGE, folder / "images" / "postgres-initdb")
    initdb = folder / "initdb.d"
    initdb.mkdir()
    (initdb / "00-schema.sql").write_text(shop_schema(), encoding="utf-8")
    volumes = ["./initdb.d:/docker-entrypoint-initdb.d:ro"]
    if seeded:
        shutil.copy(SHOP / "seed" / "catalogue.sql", initdb / "10-catalogue.sql")
        shutil.copy(SHOP / "seed" / "orders.sql", initdb / "20-orders.sql")
        shutil.copytree(SHOP / "seed", folder / "seed")
        volumes.append("./seed/products.csv:/tmp/products.csv:ro")
    doc = yaml.safe_load((SHOP / "blueprint.yaml").read_text(encoding="utf-8"))
    db = doc["services"]["db"]
    db.pop("seed")
    db["build"] = "./images/postgres-initdb"
    db["environment"] = {"POSTGRES_USER": "shop", "POSTGRES_PASSWORD": "shop", "POSTGRES_DB": "shop"}
    db["volumes"] = volumes
    db["ready"] = {"exec": ["pg_isready", "-h", "127.0.0.1", "-U", "shop"]}
    for svc in doc["services"].values():  # 8 initialising stacks on a loaded 2-CPU machine take minutes
        if isinstance(svc.get("ready"), dict):
            svc["ready"]["timeout"] = "600s"
    (folder / "blueprint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder


class Seeded:
    def __init__(self, bench: Bench, work: Path) -> None:
        self.b = bench
        self.work = work
        self.topo: dict[str, Path] = {}
        self.files: dict[str, Path] = {}
        self.samples: dict[str, list[float]] = {}
        self.load: dict[str, list[list[float]]] = {}
        self.key = ""
        self.key_was_there = False
        self.shop = work / "shop-bench"
        self.skip_initdb = False
        self.initdb_keys: set[str] = set()  # the seeded topology's db snapshot (this run's own)
        self.initdb_key = ""
        self.recaptures = 0  # times the snapshot had to be captured again (removed by another process)

    def prepare(self, out: Path) -> None:
        # The shop under a snapshot key of this run's own (one more variable in db's environment): other
        # processes on the engine start, capture and remove the plain shop's snapshot meanwhile.
        shutil.copytree(SHOP, self.shop)
        doc = yaml.safe_load((self.shop / "blueprint.yaml").read_text(encoding="utf-8"))
        doc["services"]["db"].setdefault("environment", {})["ENVKIT_BENCH_RUN"] = self.b.prefix
        (self.shop / "blueprint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        for name, seeded in (("initdb", False), ("seeded", True)):
            self.topo[name] = topology(self.work, name, seeded)
            if seeded:  # its snapshot key of this run's own, too
                blueprint = self.topo[name] / "blueprint.yaml"
                doc = yaml.safe_load(blueprint.read_text(encoding="utf-8"))
                doc["services"]["db"]["environment"]["ENVKIT_BENCH_RUN"] = self.b.prefix
                blueprint.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            self.files[name] = out / f"shop-{name}.compose.yaml"
            self.b.procs.run_all([[self.b.envkit, "export", "--format", "compose", str(self.topo[name]),
                                   "-o", str(self.files[name])]])
            # Every healthcheck waits up to 600 s, as envkit's probes do in these topologies (but for the
            # stub's, which keeps 60 s), so that Compose does not give up first on a loaded machine; and
            # one check may take 10 s: at a load average of 100 a python3 check needs more than the
            # export's 1 s and never passes (measured). The interval stays 1 s.
            doc = yaml.safe_load(self.files[name].read_text(encoding="utf-8"))
            for svc in doc["services"].values():
                if "healthcheck" in svc:
                    svc["healthcheck"].update(retries=600, timeout="10s")
            self.files[name].write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    def envkit(self, n: int, blueprint: Path, *flags: str) -> float:
        names = self.b._names("envkit", n)
        up, _ = self.b.procs.run_all([[self.b.envkit, "up", str(blueprint), "--name", r, *flags] for r in names])
        time.sleep(SETTLE)
        self.b.procs.run_all([[self.b.envkit, "down", r] for r in names])
        return up

    def compose(self, n: int, file: Path) -> float:
        names = self.b._names("compose", n)
        self.b.projects.update(names)
        base = [self.b.compose, "-f", str(file), "-p"]
        up, _ = self.b.procs.run_all([[*base, p, "up", "-d", "--wait"] for p in names])
        time.sleep(SETTLE)
        self.b.procs.run_all([[*base, p, "down", "-v", "--remove-orphans", "-t", "0"] for p in names])
        self.b.projects.difference_update(names)
        return up

    def record(self, metric: str, seconds: float) -> None:
        self.samples.setdefault(metric, []).append(seconds)
        self.load.setdefault(metric, []).append([round(x, 2) for x in os.getloadavg()])
        self.b.say(f"  {metric:<22} {seconds:7.2f}s   load {os.getloadavg()[0]:.1f}")
        time.sleep(SETTLE)

    def key_check(self) -> dict[str, Any]:
        """Two processes, two folders (copies of the shop): the same key, and the one the warm-up captured."""
        keys = []
        for where in (self.work / "a" / "shop", self.work / "b" / "deeper" / "other-name"):
            shutil.copytree(self.shop, where)
            done = subprocess.run([sys.executable, "-c", KEY_CODE], cwd=where, capture_output=True, text=True,
                                  timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"})
            if done.returncode != 0:
                raise BenchError(f"key computation in {where} failed:\n{done.stderr}")
            keys.append(json.loads(done.stdout))
        from envkit import snapshots as S
        from envkit.backends import connect

        captured = S.find(connect(), keys[0]) is not None
        if not captured and keys[0] == keys[1]:  # removed meanwhile by another process? capture it once more
            self.envkit(1, self.shop, "--snapshot")
            captured = S.find(connect(), keys[0]) is not None
        if keys[0] != keys[1] or not captured:
            raise BenchError(f"snapshot keys differ across folders/processes or miss the capture: {keys}, "
                             f"captured={captured}")
        self.key = keys[0]
        return {"keys": keys, "equal": True, "matches_capture": captured}

    def warm_up(self) -> dict[str, Any]:
        from envkit import snapshots as S
        from envkit.backends import connect

        self.b.say("warm-up: each command once (builds missing images, captures the shop's db snapshot)")
        if not self.skip_initdb:
            self.envkit(1, self.topo["initdb"])
            self.compose(1, self.files["initdb"])
        else:  # Compose's seeded topology still needs the initdb image, which envkit builds
            self.envkit(1, self.topo["seeded"])
        self.envkit(1, self.shop, "--no-snapshot")
        before = {s.key for s in S.list_snapshots(connect()) if s.blueprint == "shop" and s.service == "db"}
        self.record("capture_envkit_1", self.envkit(1, self.shop, "--snapshot"))  # seeds, then captures
        check = self.key_check()
        self.key_was_there = self.key in before
        if self.key_was_there:  # that up started from it: no capture to time
            self.samples.pop("capture_envkit_1")
        self.compose(1, self.files["seeded"])
        self.envkit(1, self.topo["seeded"], "--no-snapshot")
        mine = {s.key for s in S.list_snapshots(connect())}
        self.envkit(1, self.topo["seeded"], "--snapshot")  # the image runs the initdb scripts, then the capture
        self.initdb_keys = {s.key for s in S.list_snapshots(connect())} - mine
        if len(self.initdb_keys) != 1:
            raise BenchError(f"--snapshot of the initdb-seeded topology made {len(self.initdb_keys)} snapshots, not 1")
        self.initdb_key = next(iter(self.initdb_keys))
        return check

    def pairs(self, count: int, scales: Sequence[int]) -> None:
        for i in range(1, count + 1):
            for n in scales:
                self.b.say(f"pair {i}/{count}, {n} at once")
                if not self.skip_initdb:
                    self.record(f"initdb_envkit_{n}", self.envkit(n, self.topo["initdb"]))
                    self.record(f"initdb_compose_{n}", self.compose(n, self.files["initdb"]))
                self.record(f"seeded_envkit_{n}", self.envkit(n, self.shop, "--no-snapshot"))
                self.record(f"snapshot_envkit_{n}", self.from_snapshot(n))
                self.record(f"seeded_compose_{n}", self.compose(n, self.files["seeded"]))
                self.record(f"initdb_seeded_envkit_{n}", self.envkit(n, self.topo["seeded"], "--no-snapshot"))
                self.record(f"initdb_snapshot_envkit_{n}", self.from_snapshot(n, self.topo["seeded"], "initdb"))

    def from_snapshot(self, n: int, blueprint: Path | None = None, which: str = "shop") -> float:
        """``up --snapshot`` of n, timed only when every one started from the same snapshot: on a shared
        engine another process may remove it (a test's ``prune``); then it is captured again, untimed,
        and measured once more. ``which``: the shop's db snapshot, or the initdb-seeded topology's."""
        from envkit import snapshots as S
        from envkit.backends import connect

        blueprint = blueprint or self.shop
        key = self.key if which == "shop" else self.initdb_key
        for _ in range(3):
            snap = S.find(connect(), key)
            if snap is None:
                self.recaptures += 1
                self.b.say("  the snapshot is gone (removed by another process): capturing it again, untimed")
                self.envkit(1, blueprint, "--snapshot")
                continue
            took = self.envkit(n, blueprint, "--snapshot")
            after = S.find(connect(), key)
            if after is not None and after.created_at == snap.created_at:
                return took
            self.recaptures += 1
            self.b.say(f"  the snapshot was replaced during the measurement ({took:.1f}s not counted): again")
        raise BenchError("the snapshot kept disappearing (another process removes snapshots on this engine)")

    def cleanup(self) -> list[str]:
        left = self.b.cleanup()
        from envkit import snapshots as S
        from envkit.backends import connect

        for key in [*([self.key] if self.key and not self.key_was_there else []), *self.initdb_keys]:
            try:
                S.remove(connect(), key)
            except EnvkitError as exc:  # the key is shared: another process's run may be using it now
                self.b.say(f"cleanup: snapshot {key[:16]} kept: {exc}")
        return left


def summary(samples: dict[str, list[float]], scales: Sequence[int]) -> dict[str, Any]:
    def med(metric: str) -> float | None:
        values = sorted(samples.get(metric, []))
        return values[len(values) // 2] if len(values) % 2 else (
            (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2 if values else None)

    def ratio(a: str, b: str) -> float | None:
        x, y = med(a), med(b)
        return round(x / y, 3) if x is not None and y else None

    out: dict[str, Any] = {"median_s": {m: round(v, 3) for m in samples if (v := med(m)) is not None}, "ratios": {}}
    scales = list(dict.fromkeys(scales))
    for n in scales:
        r = out["ratios"]
        r[f"initdb_envkit_vs_compose_{n}"] = ratio(f"initdb_envkit_{n}", f"initdb_compose_{n}")
        r[f"snapshot_vs_seeded_{n}"] = ratio(f"snapshot_envkit_{n}", f"seeded_envkit_{n}")
        r[f"snapshot_vs_compose_{n}"] = ratio(f"snapshot_envkit_{n}", f"seeded_compose_{n}")
        r[f"seeded_envkit_vs_compose_{n}"] = ratio(f"seeded_envkit_{n}", f"seeded_compose_{n}")
        r[f"initdb_seeded_envkit_vs_compose_{n}"] = ratio(f"initdb_seeded_envkit_{n}", f"seeded_compose_{n}")
        r[f"initdb_snapshot_vs_seeded_{n}"] = ratio(f"initdb_snapshot_envkit_{n}", f"initdb_seeded_envkit_{n}")
        r[f"initdb_snapshot_vs_compose_{n}"] = ratio(f"initdb_snapshot_envkit_{n}", f"seeded_compose_{n}")
    met: dict[str, bool | None] = {}
    for n in scales:
        got = out["ratios"][f"snapshot_vs_seeded_{n}"]
        met[f"snapshot_vs_seeded_{n}"] = None if got is None else got <= TARGETS["snapshot_vs_seeded"]
        limit = TARGETS.get(f"snapshot_vs_compose_{n}")
        got = out["ratios"][f"snapshot_vs_compose_{n}"]
        if limit is not None:
            met[f"snapshot_vs_compose_{n}"] = None if got is None else got <= limit
    out["targets"] = {"snapshot_vs_seeded": TARGETS["snapshot_vs_seeded"], "snapshot_vs_compose_1": 0.3,
                      "snapshot_vs_compose_8": 0.4}
    out["met"] = met
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_seeded", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--scales", default="1,8,1", help="environments started at once, comma-separated, in this order "
                    "within each pair (default 1,8,1: two samples of one environment)")
    ap.add_argument("--skip-initdb", action="store_true", help="only the seeded shop (not the initdb topology)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    scales = [int(x) for x in args.scales.split(",")]
    bench_module.CHILD_TIMEOUT = 1200.0  # 8 seeded ups at once on 2 CPUs take minutes
    try:
        compose = find_compose()
        version = compose_version(compose)
        envkit = find_envkit()
    except ToolMissing as exc:
        print(f"bench_seeded: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    doc: dict[str, Any] = {"schema": "envkit.bench.seeded/v1", "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "compose_version": version, "nproc": os.cpu_count(), "scales": scales, "pairs": args.pairs,
                           "loadavg_start": list(os.getloadavg())}
    status = "ok"
    with tempfile.TemporaryDirectory(prefix="envkit-bench-seeded-") as tmp:
        bench = Bench(envkit, compose, Path(tmp), out, sys.stderr)
        seeded = Seeded(bench, Path(tmp))
        seeded.skip_initdb = args.skip_initdb
        bench.say(f"bench_seeded {bench.prefix}: compose {version}, scales {scales}, {args.pairs} pair(s), "
                  f"load {doc['loadavg_start']}")
        try:
            with sigterm_as_interrupt():
                seeded.prepare(out)
                doc["key_stability"] = seeded.warm_up()
                seeded.pairs(args.pairs, scales)
        except KeyboardInterrupt:
            status = "interrupted"
        except BenchError as exc:
            status, doc["error"] = "failed", str(exc)
        finally:
            bench.say("cleaning up")
            doc["leftovers"] = seeded.cleanup()
    doc.update(status=status, loadavg_end=list(os.getloadavg()), samples=seeded.samples, loadavg=seeded.load,
               snapshot_recaptures=seeded.recaptures,
               **summary(seeded.samples, scales))
    (out / "seeded.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: doc[k] for k in ("status", "median_s", "ratios", "met", "loadavg_start", "loadavg_end")},
                     indent=2))
    if doc.get("error"):
        print(f"bench_seeded: {doc['error']}", file=sys.stderr)
    return 0 if status == "ok" and not doc["leftovers"] else 1


if __name__ == "__main__":
    sys.exit(main())
