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
                           f"AND datallowconn AND datname <> 'postgres' AND datname NOT LIKE '{PREFIX}%';",
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
            ]
        if lines:
            self.checked(backend, container, "\n".join(lines), "make template databases")
        return names

    def reset(self, backend: Backend, container: str, databases: list[str]) -> None:
        lines = ["SELECT current_setting('server_version_num')::int >= 130000 AS envkit_force \\gset"]
        for db in databases:
            lines += [
                "\\if :envkit_force",
                f"DROP DATABASE IF EXISTS {_ident(db)} WITH (FORCE);",
                "\\else",
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {_lit(db)};",
                f"DROP DATABASE IF EXISTS {_ident(db)};",
                "\\endif",
                f"SELECT format('CREATE DATABASE %I TEMPLATE %I OWNER %I', {_lit(db)}, {_lit(template_name(db))}, "
                f"pg_get_userbyid(datdba)) FROM pg_database WHERE datname = {_lit(template_name(db))} \\gexec",
            ]
        self.checked(backend, container, "\n".join(lines), "reset from the template databases")


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
