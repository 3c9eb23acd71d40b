"""Seeds of dependants that write into a service with a snapshot, on the real engine: their rows are there
after a start from the snapshot and after every kind of reset, each once.

db (the shop's PostgreSQL, ``snapshot: true``) seeds a table; api (an HTTP server on the shop's app image)
stores what an ``http`` seed sends it in db; fixtures (a job) loads a row with a ``run`` seed; loader (a job
that depends on api, not on db) posts one through api. db's snapshot is captured before any of them run.
"""

from __future__ import annotations

import json
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import envkit
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends import Backend

from .conftest import BLUEPRINTS, envkit_cli, resources_of

PG = BLUEPRINTS / "shop" / "images" / "postgres"
APP = BLUEPRINTS / "shop" / "images" / "app"

SERVER = """\
import http.server, json, os, signal, sys, psycopg2
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        what = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["what"]
        with psycopg2.connect(os.environ["DATABASE_URL"]) as c, c.cursor() as k:
            k.execute("INSERT INTO rows VALUES (%s)", (what,))
        self.send_response(201); self.end_headers()
http.server.HTTPServer(("", 8080), H).serve_forever()
"""
POST = ("import json, urllib.request; urllib.request.urlopen(urllib.request.Request('http://api:8080/rows', "
        "json.dumps({'what': 'loader'}).encode(), {'Content-Type': 'application/json'}))")
INSERT = ("import os, psycopg2; c = psycopg2.connect(os.environ['DATABASE_URL']); "
          "c.cursor().execute(\"INSERT INTO rows VALUES ('fixtures')\"); c.commit()")

BLUEPRINT = f"""\
name: reseedtest
services:
  db:
    build: {PG}
    allow: [host-paths]
    environment: {{TOKEN: "${{TOKEN}}"}}
    snapshot: true
    ready: {{exec: [pg_isready, -h, 127.0.0.1], timeout: 60s}}
    seed:
      - sql: {{inline: "CREATE TABLE rows (what text); INSERT INTO rows VALUES ('db')", database: shop, user: shop}}
  api:
    build: {APP}
    allow: [host-paths]
    command: [python3, -c, {json.dumps(SERVER)}]
    environment: {{DATABASE_URL: "postgresql://shop:shop@db:5432/shop"}}
    depends_on: [db]
    ports: [8080]
    ready: {{http: {{port: 8080, path: /}}}}
    seed:
      - http: {{path: /rows, json: {{what: api}}, status: 201}}
  fixtures:
    kind: job
    build: {APP}
    allow: [host-paths]
    command: [python3, -c, "pass"]
    environment: {{DATABASE_URL: "postgresql://shop:shop@db:5432/shop"}}
    depends_on: [db]
    seed:
      - run: {{command: [python3, -c, {json.dumps(INSERT)}], environment: {{DATABASE_URL: "postgresql://shop:shop@db:5432/shop"}}}}
  loader:
    kind: job
    build: {APP}
    allow: [host-paths]
    command: [python3, -c, "pass"]
    depends_on: [api]
    seed:
      - run: {{command: [python3, -c, {json.dumps(POST)}]}}
"""
EVERY = ["api", "db", "fixtures", "loader"]


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    (tmp_path / "blueprint.yaml").write_text(textwrap.dedent(BLUEPRINT), encoding="utf-8")
    return tmp_path


@pytest.fixture
def token(backend: Backend) -> Iterator[str]:
    """A token of this test's own; every snapshot of this blueprint made meanwhile is removed afterwards, by
    its key (others' snapshots, made at the same time by other processes on the engine, are left alone)."""
    value = secrets.token_hex(6)
    before = ours(backend)
    yield value
    made = ours(backend) - before
    for key in made:
        S.remove(backend, key)
    assert not ours(backend) & made


def ours(backend: Backend) -> set[str]:
    return {r.labels[L.SNAPSHOT] for r in backend.list_resources({L.SNAPSHOT: None})
            if r.labels.get(L.BLUEPRINT) == "reseedtest"}


def rows(env: envkit.Environment) -> list[str]:
    out = env.exec("db", ["psql", "-X", "-At", "-U", "shop", "-d", "shop", "-c", "SELECT what FROM rows ORDER BY 1"])
    assert out.exit_code == 0, out.output
    return out.output.split()


def test_the_rows_dependants_seeded_into_a_snapshot_service_survive_a_start_from_it_and_every_reset(
        backend: Backend, blueprint: Path, token: str) -> None:
    events: list[envkit.Event] = []
    # --snapshot as well: it covers db, and leaves api out (its seed writes into db), saying why.
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend, snapshot=True, on_event=events.append) as first:
        assert rows(first) == EVERY
        assert L.SNAPSHOT not in first.info.replicas("api")[0].labels
        assert any(e.service == "api" and e.detail == "no snapshot" and "may write into" in e.message for e in events)
        first.exec("db", ["psql", "-X", "-U", "shop", "-d", "shop", "-c", "INSERT INTO rows VALUES ('test')"])
        events.clear()
        first.reset("db", on_event=events.append)  # the template path, from this process
        assert rows(first) == EVERY
        # each dependant's step once (fixtures beside api, loader after api); db's own seed not again
        assert sorted(e.service for e in events if e.action == "seed" and e.phase == "done") == [
            "api", "fixtures", "loader"]
        first.exec("db", ["psql", "-X", "-U", "shop", "-d", "shop", "-c", "DELETE FROM rows"])
        first.reset("db", path="restore")
        assert rows(first) == EVERY
        first.reset("db")  # again, through the kept session (the fast path)
        assert rows(first) == EVERY
        run_id = first.run_id
    assert resources_of(backend, run_id) == []
    events.clear()
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend, snapshot=True, on_event=events.append) as second:
        assert any(e.service == "db" and e.detail == "hit" for e in events)
        assert rows(second) == EVERY  # db's own row from the snapshot, the dependants' seeds ran again: each once
        second.exec("db", ["psql", "-X", "-U", "shop", "-d", "shop", "-c", "DELETE FROM rows WHERE what = 'api'"])
        cli = envkit_cli("reset", second.run_id, "db", env={"TOKEN": token}, check=True)  # another process
        assert "api, fixtures, loader: the seed steps that may write into db run again after the reset" in cli.stderr
        assert rows(second) == EVERY
