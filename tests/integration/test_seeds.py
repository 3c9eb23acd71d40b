"""Seed steps on the real engine: every kind works, fails with its promised message, reruns on a live run,
and what one run seeds is invisible to another. The database is the shop's PostgreSQL image (built once)."""

from __future__ import annotations

import gzip
import textwrap
import threading
from pathlib import Path

import pytest

import envkit
from envkit import api
from envkit.backends import Backend
from envkit.errors import SeedFailed, UsageError
from envkit.events import Event

from .conftest import BLUEPRINTS, envkit_cli, resources_of

PG = BLUEPRINTS / "shop" / "images" / "postgres"
STUB = BLUEPRINTS / "shop" / "images" / "payments-stub"


def write(folder: Path, blueprint: str, files: dict[str, str | bytes] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "blueprint.yaml").write_text(textwrap.dedent(blueprint), encoding="utf-8")
    for rel, content in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (folder / rel).write_bytes(content)
        else:
            (folder / rel).write_text(content, encoding="utf-8")
    return folder


def psql(env: envkit.Environment, sql: str) -> str:
    result = env.exec("db", ["psql", "-X", "-tA", "-U", "postgres", "-c", sql])
    assert result.exit_code == 0, result.output
    return result.output.strip()


EVERY_KIND = f"""
    name: seedall
    services:
      db:
        build: {PG}
        allow: [host-paths]
        networks: [default]
        ready: {{exec: [pg_isready, -h, 127.0.0.1], timeout: 60s}}
        seed:
          - sql: seed/schema.sql
          - sql: seed/more.sql.gz
          - sql: "INSERT INTO seeded VALUES ('inline ${{run.id}}')"
          - copy: {{source: seed/files, target: /tmp/deep/er/files, owner: "70:71", mode: "0600"}}
          - exec: {{command: [psql, -X, -q, -v, ON_ERROR_STOP=1], stdin: seed/stdin.sql}}
          - run:
              command: [psql, -h, db, -U, shop, -d, postgres, -c, "INSERT INTO seeded VALUES ('from run')"]
              environment: {{PGPASSWORD: shop}}
      pay:
        build: {STUB}
        allow: [host-paths]
        ports: [8000]
        ready: {{http: {{port: 8000, path: /health}}}}
        seed:
          - http: {{method: POST, path: /charges, json: {{order_id: 7, amount_cents: 99}}, status: 201}}
    """
FILES: dict[str, str | bytes] = {
    "seed/schema.sql": "CREATE TABLE seeded (what text);\nGRANT ALL ON seeded TO shop;\n"
                       "INSERT INTO seeded VALUES ('file ' || :'run_id');\n",
    "seed/more.sql.gz": gzip.compress(b"INSERT INTO seeded VALUES ('gzip');\n"),
    "seed/stdin.sql": "INSERT INTO seeded VALUES ('stdin');\n",
    "seed/files/a.txt": "alpha\n",
    "seed/files/sub/b.txt": "beta\n",
}


def test_every_kind_seeds_the_run_and_envkit_seed_runs_them_again(tmp_path: Path, backend: Backend) -> None:
    folder = write(tmp_path / "all", EVERY_KIND, FILES)
    events: list[Event] = []
    with envkit.up(folder, on_event=events.append) as env:
        run = env.run_id
        rows = psql(env, "SELECT what FROM seeded ORDER BY what").splitlines()
        assert rows == sorted([f"file {run}", "gzip", f"inline {run}", "stdin", "from run"])
        copied = env.exec("db", ["sh", "-c", "cd /tmp/deep/er/files && stat -c '%n %u:%g %a' a.txt sub/b.txt "
                                 "&& cat a.txt"], user="root")
        assert copied.output.splitlines() == ["a.txt 70:71 600", "sub/b.txt 70:71 600", "alpha"]
        assert env.exec("db", ["sh", "-c", "ls /tmp | grep -c envkit-seed || true"]).output.strip() == "0"
        status, charges = _get_json(env.url("pay", 8000, path="/charges"))
        assert status == 200 and [(c["order_id"], c["amount_cents"]) for c in charges] == [(7, 99)]
        # Progress: one typed start event per step, saying which step of how many, of which kind.
        starts = [(e.service, e.detail) for e in events if e.action == "seed" and e.phase == "start"]
        assert [d for s, d in starts if s == "db"] == [
            "1/6 sql seed/schema.sql", "2/6 sql seed/more.sql.gz", f"3/6 sql INSERT INTO seeded VALUES ('inline {run}')",
            "4/6 copy seed/files -> /tmp/deep/er/files", "5/6 exec psql -X -q -v ON_ERROR_STOP=1 < stdin.sql",
            "6/6 run psql -h db -U shop -d postgres -c INSERT INTO seeded VALUES ('from run')"]
        assert [d for s, d in starts if s == "pay"] == ["1/1 http POST /charges -> 201"]
        assert not [r for r in resources_of(backend, run) if "-seed-" in r]  # the run step's container is gone

        # Again, on the live run: `envkit seed RUN db` (the schema step now fails: the table exists).
        again = envkit_cli("seed", run, "db")
        assert again.returncode == 6, again.stderr
        assert "service db: seed step 1/6 (sql seed/schema.sql) failed: seed/schema.sql:1: ERROR:  relation " \
               "\"seeded\" already exists" in again.stderr
        psql(env, "DROP TABLE seeded")
        ok = envkit_cli("seed", run, "db")
        assert ok.returncode == 0, ok.stderr
        assert "6 seed steps done (db)" in ok.stderr
        assert len(psql(env, "SELECT what FROM seeded").splitlines()) == 5
        assert _get_json(env.url("pay", 8000, path="/charges"))[1] == charges  # pay was not seeded again
    assert resources_of(backend, run) == []


def _get_json(url: str) -> tuple[int, list[dict[str, int]]]:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


ISOLATED = f"""
    name: seediso
    services:
      db:
        build: {PG}
        allow: [host-paths]
        ready: {{exec: [pg_isready, -h, 127.0.0.1], timeout: 60s}}
        seed:
          - sql: "CREATE TABLE mine AS SELECT '${{run.id}}'::text AS run"
    """


def test_what_one_run_seeds_is_invisible_to_another_and_no_seed_skips_it(tmp_path: Path, backend: Backend) -> None:
    folder = write(tmp_path / "iso", ISOLATED)
    envs: list[envkit.Environment] = []
    errors: list[BaseException] = []

    def bring_up(seed: bool) -> None:
        try:
            envs.append(envkit.up(folder, seed=seed))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bring_up, args=(s,)) for s in (True, True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        seeded = [e for e in envs if psql(e, "SELECT to_regclass('mine') IS NOT NULL") == "t"]
        assert len(seeded) == 2
        for env in seeded:
            assert psql(env, "SELECT run FROM mine") == env.run_id  # its own row, and only that
        (unseeded,) = [e for e in envs if e not in seeded]
        assert psql(unseeded, "SELECT to_regclass('mine') IS NULL") == "t"
    finally:
        for env in envs:
            env.down()
    for env in envs:
        assert resources_of(backend, env.run_id) == []


FAILING = {
    "sql": ("{sql: seed/bad.sql}",
            "service db: seed step 1/1 (sql seed/bad.sql) failed: seed/bad.sql:3: ERROR:  relation "
            "\"no_such_table\" does not exist"),
    "exec": ("{exec: [sh, -c, 'echo about to fail; exit 3']}",
             "service db: seed step 1/1 (exec sh -c echo about to fail; exit 3) failed: exited with code 3\n"
             "  output of the step:\n  | about to fail"),
    "run": ("{run: {command: [sh, -c, 'echo migration failed >&2; exit 4']}}",
            "service db: seed step 1/1 (run sh -c echo migration failed >&2; exit 4) failed: "
            "envkit-RUN-db-seed-1 exited with code 4\n  output of the step:\n  | migration failed"),
    "http": ("{http: {port: 8000, method: POST, path: /nope, json: {a: 1}, status: 201}}",
             "service db: seed step 1/1 (http POST /nope -> 201) failed: POST /nope answered 404, expected 201"),
}


@pytest.mark.parametrize("kind", sorted(FAILING))
def test_a_failing_step_names_the_step_shows_its_output_and_the_run_is_rolled_back(
        tmp_path: Path, backend: Backend, kind: str) -> None:
    step, message = FAILING[kind]
    image = STUB if kind == "http" else PG
    ready = "{http: {port: 8000, path: /health}}" if kind == "http" else "{exec: [pg_isready, -h, 127.0.0.1]}"
    folder = write(tmp_path / kind, f"""
        name: seedfail
        services:
          db:
            build: {image}
            allow: [host-paths]
            ready: {ready}
            seed: [{step}]
        """, {"seed/bad.sql": "SELECT 1;\n\nSELECT * FROM no_such_table;\nSELECT 2;\n"})
    events: list[Event] = []
    with pytest.raises(SeedFailed) as err:
        envkit.up(folder, on_event=events.append, artifacts=tmp_path / "bundles")
    run = next(e.run_id for e in events)
    assert str(err.value).startswith(message.replace("RUN", run)), str(err.value)
    assert (err.value.service, err.value.index, err.value.kind) == ("db", 1, kind)
    # The bundle: the step's result in seeds.txt, and the summary names the step first.
    seeds = (tmp_path / "bundles" / run / "seeds.txt").read_text(encoding="utf-8")
    answer = {"sql": "exit 3", "exec": "exit 3", "run": "exit 4", "http": "HTTP 404"}[kind]
    assert f"  1/1 {kind} " in seeds and f"s  {answer}" in seeds and "FAILED: " in seeds, seeds
    summary = (tmp_path / "bundles" / run / "SUMMARY.txt").read_text(encoding="utf-8").splitlines()
    assert summary[2].startswith(f"culprit: service db — seed step 1/1 ({kind} "), summary
    assert summary[3].startswith(f"  seed step 1/1 {kind} "), summary
    assert any(e.kind == "rollback" for e in events)
    assert resources_of(backend, run) == []


def test_seed_of_an_unknown_service_or_run_is_refused(tmp_path: Path, backend: Backend) -> None:
    with envkit.up(write(tmp_path / "iso", ISOLATED), seed=False) as env:
        with pytest.raises(UsageError, match="has no service nope"):
            api.seed(env.run_id, ("nope",), backend=backend)
        env.seed("db")  # the API's way: the step runs on the live run
        assert psql(env, "SELECT run FROM mine") == env.run_id
