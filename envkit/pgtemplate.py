"""PostgreSQL's fast reset: template databases, made once after seeding, cloned back on reset.

After the seeds, every ordinary database ``x`` of the server (not ``postgres``, not a template) gets a
copy ``envkit_tpl_x`` that nobody may connect to (``ALLOW_CONNECTIONS false``). A reset then drops
``x`` — terminating its sessions (``WITH (FORCE)`` from PostgreSQL 13; before, ``pg_terminate_backend``)
— and creates it again from the template, with the same owner. The server keeps running, so every
other session, the container, its address and its ports are untouched; an application that opens a
connection per request, or reconnects on a dropped one, goes on working.

Everything runs through the container's own ``psql`` over its local socket as the superuser
(``POSTGRES_USER`` of the service's environment, else ``postgres``), which needs local connections
to be trusted (the default of the official image and of Debian's clusters in containers).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from envkit.backends.base import Backend, ExecResult
from envkit.errors import EngineError

__all__ = ["Postgres", "detect"]

PREFIX = "envkit_tpl_"


@dataclass(frozen=True)
class Postgres:
    """How to reach the server in a container: the superuser and the OS user to exec as ("" = default)."""

    superuser: str
    exec_user: str = ""

    def run(self, backend: Backend, container: str, script: str) -> ExecResult:
        """A psql script (psql's own commands allowed), autocommit, stopping at the first error."""
        shell = 'printf "%s\\n" "$1" | psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$2" -d postgres'
        return backend.exec(container, ("sh", "-c", shell, "sh", script, self.superuser), self.exec_user or None,
                            timeout=300)

    def checked(self, backend: Backend, container: str, script: str, what: str) -> str:
        result = self.run(backend, container, script)
        if result.exit_code != 0:
            raise EngineError(f"{what}: psql exited with code {result.exit_code}: {result.output.strip()[-600:]}")
        return result.output

    def databases(self, backend: Backend, container: str) -> list[str]:
        out = self.checked(backend, container, "SELECT datname FROM pg_database WHERE NOT datistemplate "
                           "AND datallowconn AND datname <> 'postgres' AND datname NOT LIKE 'envkit\\_%';",
                           "list databases")
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def make_templates(self, backend: Backend, container: str) -> list[str]:
        """A template of every ordinary database (made again if one exists); returns the databases."""
        names = self.databases(backend, container)
        lines = []
        for db in names:
            tpl = template_name(db)
            lines += [
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {_lit(db)} "
                "AND pid <> pg_backend_pid();",
                f"UPDATE pg_database SET datistemplate = false WHERE datname = {_lit(tpl)};",
                f"DROP DATABASE IF EXISTS {_ident(tpl)};",
                f"SELECT format('CREATE DATABASE %I TEMPLATE %I OWNER %I', {_lit(tpl)}, {_lit(db)}, "
                f"pg_get_userbyid(datdba)) FROM pg_database WHERE datname = {_lit(db)} \\gexec",
                f"ALTER DATABASE {_ident(tpl)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false;",
                _attributes(db, tpl),  # kept on the template, handed on to every copy of it (``_create``)
                f"DROP DATABASE IF EXISTS {_ident(ready_name(db))};",
                _create(ready_name(db), tpl),  # the first ready copy, in the snapshot with the template
                f"ALTER DATABASE {_ident(ready_name(db))} WITH ALLOW_CONNECTIONS false;",
            ]
        if lines:
            lines.insert(0, "SELECT current_setting('server_version_num')::int >= 150000 AS envkit_copy \\gset")
            self.checked(backend, container, "\n".join(lines), "make template databases")
        return names

    def reset(self, backend: Backend, container: str, databases: list[str]) -> None:
        """The one-shot way (``envkit.pgsession`` keeps a session instead): one exec runs the swap in the
        foreground, then the refill in the background, off the caller's clock."""
        shell = ('printf "%s\\n" "$1" | psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$3" -d postgres || exit $?; '
                 'printf "%s\\n" "$2" | nohup psql -X -q -v ON_ERROR_STOP=1 -U "$3" -d postgres >/dev/null 2>&1 &')
        result = backend.exec(container, ("sh", "-c", shell, "sh", swap_script(databases), refill_script(databases),
                                          self.superuser), self.exec_user or None, timeout=300)
        if result.exit_code != 0:
            raise EngineError(f"reset from the template databases: psql exited with code {result.exit_code}: "
                              f"{result.output.strip()[-600:]}")


#: the advisory lock every swap and refill holds, so that resets from several processes (or a refill
#: still running) take turns instead of racing over the same names
_LOCK = "SELECT pg_advisory_lock(1701147493, 1) AS envkit_locked \\gset"
_UNLOCK = "SELECT pg_advisory_unlock(1701147493, 1) AS envkit_unlocked \\gset"


def swap_script(databases: list[str], tag: str = "") -> str:
    """Put each database back: refuse new sessions, end its sessions, then in one transaction rename it
    away (to a name of its own, ``tag``: a random one by default) and the ready copy in — catalogue
    updates only; with no ready copy, drop it and clone the template. Safe to run again after it was
    cut off half-way (each step checks what is there)."""
    tag = tag or secrets.token_hex(4)
    lines = [
        "SET client_min_messages = warning;",
        _LOCK,
        "SELECT current_setting('server_version_num')::int >= 150000 AS envkit_copy, "
        "current_setting('server_version_num')::int >= 140000 AS envkit_wait \\gset",
    ]
    lines += _extra_databases(databases, tag)
    for db in databases:
        ready, old = ready_name(db), old_name(db, tag)
        lines += [
            f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {_lit(ready)}) AS envkit_ready, "
            f"EXISTS (SELECT 1 FROM pg_database WHERE datname = {_lit(db)}) AS envkit_have \\gset",
            "\\if :envkit_have",
            f"ALTER DATABASE {_ident(db)} WITH ALLOW_CONNECTIONS false;",
            "\\if :envkit_wait",  # PostgreSQL 14+: wait until each session has ended
            f"SELECT count(pg_terminate_backend(pid, 5000)) AS envkit_ended FROM pg_stat_activity "
            f"WHERE datname = {_lit(db)} \\gset",
            "\\else",
            f"SELECT count(pg_terminate_backend(pid)) AS envkit_ended FROM pg_stat_activity "
            f"WHERE datname = {_lit(db)} \\gset",
            "SELECT pg_sleep(0.05) AS envkit_slept \\gset",
            "\\endif",
            "\\endif",
            "\\if :envkit_ready",
            "BEGIN;",
            "\\if :envkit_have",
            f"ALTER DATABASE {_ident(db)} RENAME TO {_ident(old)};",
            "\\endif",
            f"ALTER DATABASE {_ident(ready)} RENAME TO {_ident(db)};",
            f"ALTER DATABASE {_ident(db)} WITH ALLOW_CONNECTIONS true;",
            "COMMIT;",
            "\\else",
            "\\if :envkit_have",
            *_COPY_UP,
            f"DROP DATABASE {_ident(db)};",  # DROP waits (5 s) for ended sessions to be gone
            "\\endif",
            _create(db, template_name(db)),
            f"ALTER DATABASE {_ident(db)} WITH ALLOW_CONNECTIONS true;",
            "\\endif",
        ]
    lines.append(_UNLOCK)
    return "\n".join(lines)


def _extra_databases(databases: list[str], tag: str) -> list[str]:
    """The databases made since the capture (a test's ``CREATE DATABASE tenant_1``) are not the seeded
    state: renamed away with the copies swapped out (``envkit_old_*``), which the refill drops. Those that
    refused connections at the capture were not listed then and are left alone."""
    known = ", ".join(_lit(db) for db in [*databases, "postgres"])
    return [
        "SELECT coalesce(string_agg(quote_literal(datname), ','), '''''') AS envkit_extra FROM pg_database "
        f"WHERE NOT datistemplate AND datallowconn AND datname NOT IN ({known}) "
        "AND datname NOT LIKE 'envkit\\_%' \\gset",
        "SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS false', datname) FROM pg_database "
        "WHERE datname IN (:envkit_extra) \\gexec",
        "\\if :envkit_wait",
        "SELECT count(pg_terminate_backend(pid, 5000)) AS envkit_ended FROM pg_stat_activity "
        "WHERE datname IN (:envkit_extra) \\gset",
        "\\else",
        "SELECT count(pg_terminate_backend(pid)) AS envkit_ended FROM pg_stat_activity "
        "WHERE datname IN (:envkit_extra) \\gset",
        "SELECT pg_sleep(0.05) AS envkit_slept \\gset",
        "\\endif",
        f"SELECT format('ALTER DATABASE %I RENAME TO %I', datname, left('envkit_old_{tag}_x_' || datname, 63)) "
        "FROM pg_database WHERE datname IN (:envkit_extra) \\gexec",
    ]


def refill_script(databases: list[str]) -> str:
    """Make the next ready copies (no connections allowed to them), holding the lock — a swap that
    comes meanwhile waits for the copy, never longer than making one itself — then drop the copies
    swapped out (every ``envkit_old_*``), after the lock: a swap need not wait for that."""
    lines = ["SET client_min_messages = warning;", _LOCK,
             "SELECT current_setting('server_version_num')::int >= 150000 AS envkit_copy \\gset"]
    for db in databases:
        ready = ready_name(db)
        lines += [f"SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {_lit(ready)}) AS envkit_make \\gset",
                  "\\if :envkit_make", _create(ready, template_name(db)),
                  f"ALTER DATABASE {_ident(ready)} WITH ALLOW_CONNECTIONS false;", "\\endif"]
    lines += [_UNLOCK, *_COPY_UP,
              "SELECT format('DROP DATABASE IF EXISTS %I', datname) FROM pg_database "
              "WHERE datname LIKE 'envkit\\_old\\_%' \\gexec"]
    return "\n".join(lines)


# Before the first DROP DATABASE in a container started from a snapshot image: every data file opened
# for writing once, so that the overlay file system copies it up from the image's layer now. DROP
# DATABASE signals every backend (PostgreSQL's barrier); a backend that is then waiting for another's
# copy-up of the same file (PostgreSQL opens relations read-write, so a plain SELECT copies them up)
# gets EINTR from open(), and its query fails with "could not open file ...: Interrupted system call".
# Seen on the shop: a reset, then the first queries against the database swapped in, while the refill
# dropped the old one. Files already copied up (every later refill) cost an open each.
_COPY_UP = (
    "SELECT setting AS envkit_datadir FROM pg_settings WHERE name = 'data_directory' \\gset",
    "\\setenv ENVKIT_DATADIR :envkit_datadir",
    "\\! find \"$ENVKIT_DATADIR\" -type f -size +0 -print0 2>/dev/null"
    " | xargs -0 -r sh -c 'for f; do : >> \"$f\"; done' envkit 2>/dev/null; true",
)


def _create(db: str, template: str) -> str:
    """CREATE DATABASE db from template with the template's owner and database-level attributes; a file
    copy where the server has it (PostgreSQL 15+: far quicker than its default, WAL-logged copy, for a
    database of many MB)."""
    fmt = "CREATE DATABASE %I TEMPLATE %I OWNER %I"
    return ("\\if :envkit_copy\n"
            f"SELECT format('{fmt} STRATEGY FILE_COPY', {_lit(db)}, {_lit(template)}, pg_get_userbyid(datdba)) "
            f"FROM pg_database WHERE datname = {_lit(template)} \\gexec\n"
            "\\else\n"
            f"SELECT format('{fmt}', {_lit(db)}, {_lit(template)}, pg_get_userbyid(datdba)) "
            f"FROM pg_database WHERE datname = {_lit(template)} \\gexec\n"
            "\\endif\n" + _attributes(template, db))


def _attributes(source: str, target: str) -> str:
    """What CREATE DATABASE does not copy from its template, copied from ``source`` to ``target``: the
    privileges (``GRANT``/``REVOKE CONNECT, CREATE, TEMP ON DATABASE``), the connection limit, the settings
    (``ALTER DATABASE … SET``, ``ALTER ROLE … IN DATABASE … SET``) and the comment. Without them a reset
    database has ``PUBLIC`` allowed to connect again and loses its ``search_path``. The settings' rows are
    copied as they are (keyed by the database's oid, which a copy does not keep; DROP ROLE and DROP
    DATABASE remove them), the connection limit likewise."""
    src, dst = (f"(SELECT oid FROM pg_database WHERE datname = {_lit(name)})" for name in (source, target))
    acl = f"(SELECT datacl FROM pg_database WHERE datname = {_lit(source)})"
    grantee = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END"
    return "\n".join([
        # GRANT and REVOKE rather than a copy of datacl: they record who the privileges name
        # (pg_shdepend), so DROP ROLE still refuses a role the database grants to.
        f"SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', {_lit(target)}) WHERE {acl} IS NOT NULL \\gexec",
        f"SELECT format('GRANT %s ON DATABASE %I TO %s%s', a.privilege_type, {_lit(target)}, {grantee}, "
        f"CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) FROM aclexplode({acl}) a \\gexec",
        f"UPDATE pg_database SET datconnlimit = s.datconnlimit FROM pg_database s "
        f"WHERE s.datname = {_lit(source)} AND pg_database.datname = {_lit(target)};",
        f"DELETE FROM pg_db_role_setting WHERE setdatabase = {dst};",
        f"INSERT INTO pg_db_role_setting SELECT {dst}, setrole, setconfig FROM pg_db_role_setting "
        f"WHERE setdatabase = {src};",
        f"SELECT format('COMMENT ON DATABASE %I IS %L', {_lit(target)}, "
        f"shobj_description({src}, 'pg_database')) WHERE shobj_description({src}, 'pg_database') IS NOT NULL "
        "\\gexec",
    ])


def ready_name(db: str) -> str:
    return ("envkit_rdy_" + db)[:63]


def old_name(db: str, tag: str) -> str:
    return f"envkit_old_{tag}_{db}"[:63]


def template_name(db: str) -> str:
    return (PREFIX + db)[:63]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def detect(backend: Backend, container: str, environment: Mapping[str, str]) -> Postgres | None:
    """The way in when the container runs a PostgreSQL server whose superuser psql reaches, else None."""
    user = environment.get("POSTGRES_USER") or "postgres"
    for exec_user in ("", "postgres"):
        pg = Postgres(user, exec_user)
        try:
            if pg.run(backend, container, "SELECT 1;").exit_code == 0:
                return pg
        except EngineError:
            return None  # e.g. no sh in the image
    return None
