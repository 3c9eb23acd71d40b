"""``sql`` seeds on a real MariaDB (Debian's mariadb-server, the image ``envkit init --with mysql`` writes):
a .sql file and a .sql.gz through the ``mariadb`` client, a failing statement reported by file, line and the
server's message, and the generic reset (restore from the snapshot) of it. One environment for the module."""

from __future__ import annotations

import gzip
import textwrap
from collections.abc import Iterator

import pytest

import envkit
from envkit import api
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends import Backend
from envkit.errors import SeedFailed
from envkit.events import Event
from envkit.starter import CHOICES

from .conftest import resources_of

pytestmark = pytest.mark.integration

BLUEPRINT = """
    name: seedmaria
    services:
      db:
        build: ./images/mysql
        environment: {MYSQL_DATABASE: app, MYSQL_PASSWORD: app}
        ready: {exec: [mariadb-admin, ping, -h, 127.0.0.1, --silent], timeout: 90s}
        snapshot: true
        seed:
          - sql: {file: seed/schema.sql, user: app}
          - sql: {file: seed/rows.sql.gz, user: app}
          - sql: {inline: "INSERT INTO seeded (what) VALUES ('inline')", user: app}
    """
SCHEMA = "-- the shop's tables, for MariaDB\n\nCREATE TABLE seeded (id INT AUTO_INCREMENT PRIMARY KEY, what TEXT);\n" \
         "INSERT INTO seeded (what) VALUES ('file');\n"


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[tuple[envkit.Environment, list[Event]]]:
    folder = tmp_path_factory.mktemp("maria")
    (folder / "blueprint.yaml").write_text(textwrap.dedent(BLUEPRINT), encoding="utf-8")
    for name, text in CHOICES["mysql"].files:  # the starter's Dockerfile: its build is shared with `envkit init`
        (folder / "images" / "mysql").mkdir(parents=True, exist_ok=True)
        (folder / "images" / "mysql" / name).write_text(text, encoding="utf-8")
    (folder / "seed").mkdir()
    (folder / "seed" / "schema.sql").write_text(SCHEMA, encoding="utf-8")
    rows = "".join(f"INSERT INTO seeded (what) VALUES ('gzip {i}');\n" for i in range(3))
    (folder / "seed" / "rows.sql.gz").write_bytes(gzip.compress(rows.encode()))
    events: list[Event] = []
    keys: set[str] = set()
    try:
        with envkit.up(folder, backend=backend, on_event=events.append) as env:
            keys.add(env.info.replicas("db")[0].labels[L.SNAPSHOT])
            yield env, events
        assert resources_of(backend, env.run_id) == []
    finally:
        for key in keys:
            S.remove(backend, key)
    assert not [r for key in keys for r in backend.list_resources({L.SNAPSHOT: key})]


def rows(env: envkit.Environment) -> list[str]:
    out = env.exec("db", ["mariadb", "--user", "app", "--password=app", "--database", "app", "--batch",
                          "--skip-column-names", "--execute", "SELECT what FROM seeded ORDER BY id"])
    assert out.exit_code == 0, out.output
    return out.output.splitlines()


def test_sql_files_and_gzip_seed_through_the_mariadb_client(maria: tuple[envkit.Environment, list[Event]]) -> None:
    env, events = maria
    assert rows(env) == ["file", "gzip 0", "gzip 1", "gzip 2", "inline"]
    done = [e.message for e in events if e.action == "seed" and e.phase == "done" and e.service == "db"]
    assert any("seed/schema.sql: mariadb done" in m for m in done), done


def test_a_failing_statement_names_the_file_its_line_and_the_servers_message(
        maria: tuple[envkit.Environment, list[Event]], backend: Backend) -> None:
    env, _ = maria
    with pytest.raises(SeedFailed) as err:
        api.seed(env.run_id, ("db",), backend=backend)  # again: the table is there now
    assert str(err.value).startswith(
        "service db: seed step 1/3 (sql seed/schema.sql) failed: seed/schema.sql:3: ERROR 1050 (42S01): "
        "Table 'seeded' already exists"), str(err.value)
    assert rows(env)[0] == "file"  # the run stays as it was


def test_the_generic_reset_puts_mariadb_back_to_its_seeded_rows(maria: tuple[envkit.Environment, list[Event]]) -> None:
    env, _ = maria
    seeded = rows(env)
    added = env.exec("db", ["mariadb", "--user", "app", "--password=app", "--database", "app", "--execute",
                            "INSERT INTO seeded (what) VALUES ('written by a test')"])
    assert added.exit_code == 0, added.output
    assert rows(env) == [*seeded, "written by a test"]
    taken_events: list[Event] = []
    env.reset("db", on_event=taken_events.append)
    assert rows(env) == seeded
    assert [e.detail for e in taken_events if e.action == "reset" and e.phase == "done"] == ["restored from the snapshot"]
