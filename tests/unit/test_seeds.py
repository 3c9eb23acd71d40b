"""The SQL kind's pure parts: the client's command line and the first error read back from its output."""

from __future__ import annotations

from pathlib import Path

from envkit.blueprint.model import SqlSeed
from envkit.seeds import Run, _sql_argv, _sql_reason
from envkit.steps import SeedStep


def _run(env: tuple[tuple[str, str], ...] = ()) -> Run:
    step = SeedStep("db", 1, 1, SqlSeed(inline="x"), "sql x", "r1", ("envkit-r1-db-1",), Path("/bp"), env)
    return Run(None, {}, None, step, lambda i, n: None, lambda t: t)  # type: ignore[arg-type]


def test_psql_gets_the_service_user_and_database_and_stops_at_the_first_error() -> None:
    run = _run((("POSTGRES_USER", "app"), ("POSTGRES_DB", "appdb")))
    assert _sql_argv(run, SqlSeed(inline="x"), "psql", dict(run.step.environment), "/tmp/f.sql") == (
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "run_id=r1", "-U", "app", "-d", "appdb", "-f", "/tmp/f.sql")
    gz = _sql_argv(run, SqlSeed(inline="x", password="pw"), "psql", {}, "/tmp/f.sql.gz")
    assert gz[:4] == ("sh", "-c", 'gzip -dc "$0" | "$@"', "/tmp/f.sql.gz")
    assert gz[4:7] == ("env", "PGPASSWORD=pw", "psql") and gz[-2:] == ("-f", "-")


def test_mysql_takes_the_root_password_from_the_service() -> None:
    env = {"MYSQL_ROOT_PASSWORD": "s3cret", "MYSQL_DATABASE": "shop"}
    assert _sql_argv(_run(), SqlSeed(inline="x"), "mysql", env, "/tmp/f.sql") == (
        "sh", "-c", 'exec "$@" < "$0"', "/tmp/f.sql",
        "env", "MYSQL_PWD=s3cret", "mysql", "--user", "root", "--database", "shop", "--batch")


def test_the_first_error_names_the_users_file_and_line() -> None:
    psql = "psql:/tmp/envkit-seed-2-orders.sql:12: ERROR:  relation \"nope\" does not exist\nLINE 1: ..."
    assert _sql_reason(psql, "seed/orders.sql", "/tmp/envkit-seed-2-orders.sql") == (
        "seed/orders.sql:12: ERROR:  relation \"nope\" does not exist")
    piped = "psql:<stdin>:3: ERROR:  syntax error at or near \"SELEC\""
    assert _sql_reason(piped, "seed/a.sql.gz", "/tmp/x").startswith("seed/a.sql.gz:3: ERROR:  syntax error")
    mysql = "ERROR 1146 (42S02) at line 7 in file: '/tmp/envkit-seed-1-a.sql': Table 'shop.nope' doesn't exist"
    assert _sql_reason(mysql, "seed/a.sql", "/tmp/envkit-seed-1-a.sql") == (
        "seed/a.sql:7: ERROR 1146 (42S02): Table 'shop.nope' doesn't exist")
    assert _sql_reason("FATAL: role \"x\" does not exist\n", "inline SQL", "/tmp/x") == "FATAL: role \"x\" does not exist"
