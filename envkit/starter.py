"""Starter blueprints for ``envkit init``: a menu of common services, each with a small build context.

``starter()`` is pure: from the chosen menu entries it makes the files of a new blueprint folder —
``blueprint.yaml`` and, for each service, ``images/<service>/`` with a Dockerfile ``FROM
debian:bookworm-slim`` that installs Debian's package (no registry needed), plus the outputs tests
read. The app (``app``) builds from your own Dockerfile when you have one, else from a placeholder
that answers ``GET /health``, to be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from envkit.compose_forms import BlueprintDumper

__all__ = ["CHOICES", "Choice", "starter"]

_CLEAN = ("apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*")


def _apt(*packages: str) -> str:
    return ("RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            f"{' '.join(packages)} \\\n && {_CLEAN}")


_POSTGRES = f"""# PostgreSQL 15 (Debian's), with role and database `app` (password `app`) made at build time.
# Durability is off (fsync, synchronous_commit, full_page_writes): for throw-away test data only.
FROM debian:bookworm-slim
RUN mkdir -p /etc/postgresql-common/createcluster.d \\
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/envkit.conf
{_apt("postgresql-15")}
ENV PGDATA=/var/lib/postgresql/data \\
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER postgres
RUN set -eu \\
 && mkdir -p /var/run/postgresql "$PGDATA" && chmod 2775 /var/run/postgresql && chmod 700 "$PGDATA" \\
 && initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null \\
 && printf "listen_addresses = '*'\\nfsync = off\\nsynchronous_commit = off\\nfull_page_writes = off\\n" \\
      >> "$PGDATA/postgresql.conf" \\
 && printf 'host all all 0.0.0.0/0 scram-sha-256\\nhost all all ::/0 scram-sha-256\\n' >> "$PGDATA/pg_hba.conf" \\
 && printf '%s\\n' "CREATE ROLE app LOGIN CREATEDB PASSWORD 'app';" "CREATE DATABASE app OWNER app;" \\
    | postgres --single -D "$PGDATA" postgres >/dev/null
EXPOSE 5432
STOPSIGNAL SIGINT
CMD ["postgres", "-D", "/var/lib/postgresql/data"]
"""

_MARIADB = f"""# MariaDB (Debian's), with database `app` and user `app` (password `app`) made at build time.
FROM debian:bookworm-slim
{_apt("mariadb-server")} \\
 && mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld \\
 && printf '[mysqld]\\nbind-address = 0.0.0.0\\nskip-name-resolve\\ninnodb_flush_log_at_trx_commit = 0\\n' \\
      > /etc/mysql/mariadb.conf.d/99-envkit.cnf
USER mysql
RUN printf '%s\\n' "FLUSH PRIVILEGES;" "CREATE DATABASE app;" "CREATE USER 'app'@'%' IDENTIFIED BY 'app';" \\
      "GRANT ALL ON app.* TO 'app'@'%';" | mariadbd --bootstrap
EXPOSE 3306
CMD ["mariadbd"]
"""

_REDIS = f"""# Redis (Debian's), in memory only, reachable from the run's other containers.
FROM debian:bookworm-slim
{_apt("redis-server")}
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
"""

_RABBITMQ = f"""# RabbitMQ (Debian's); the `guest` user may connect from other containers (test use only).
FROM debian:bookworm-slim
{_apt("rabbitmq-server")} \\
 && printf 'loopback_users = none\\nlisteners.tcp.default = 5672\\n' > /etc/rabbitmq/rabbitmq.conf
ENV RABBITMQ_NODENAME=rabbit@localhost
USER rabbitmq
EXPOSE 5672
CMD ["rabbitmq-server"]
"""

_PYTHON = f"""FROM debian:bookworm-slim
{_apt("python3")}
"""

_STUB_SERVER = '''"""An HTTP stand-in for an external service: answers from routes.json ("METHOD /path" -> status, body)."""

import http.server
import json
import pathlib

ROUTES = json.loads(pathlib.Path(__file__).with_name("routes.json").read_text())


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self) -> None:
        route = ROUTES.get(f"{self.command} {self.path.split('?')[0]}")
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length) if length else b""
        if route is None:
            status, body = 404, json.dumps({"error": f"no route {self.command} {self.path}"}).encode()
        elif route.get("echo"):
            status, body = route.get("status", 200), sent
        else:
            status, body = route.get("status", 200), json.dumps(route.get("body", {})).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer


http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''

_ROUTES = """{
  "GET /health": {"status": 200, "body": {"ok": true}},
  "GET /v1/greeting": {"status": 200, "body": {"message": "hello from the stub"}},
  "POST /v1/echo": {"status": 200, "echo": true}
}
"""

_APP_SERVER = '''"""A placeholder for your app: replace this folder's Dockerfile with your own (or point build: at it)."""

import http.server
import json
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": True, "env": sorted(k for k in os.environ if k.endswith("_URL"))}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''


@dataclass(frozen=True)
class Choice:
    key: str  # the menu's name: --with KEY
    title: str
    service: str  # the service's name in the blueprint (its DNS name in the run)
    files: tuple[tuple[str, str], ...]  # images/<service>/<name> -> text
    spec: dict[str, Any]  # the service's keys (without build:)
    outputs: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # what the app gets to reach it


def _url(scheme: str, service: str, port: int, tail: str = "", auth: str = "") -> str:
    return f"{scheme}://{auth}${{services.{service}.host}}:${{services.{service}.ports.{port}}}{tail}"


CHOICES: dict[str, Choice] = {c.key: c for c in (
    Choice("postgres", "PostgreSQL 15", "db", (("Dockerfile", _POSTGRES),),
           {"ports": [5432], "ready": {"exec": ["pg_isready", "-h", "127.0.0.1", "-U", "app"], "timeout": "60s"}},
           (("DATABASE_URL", _url("postgresql", "db", 5432, "/app", "app:app@")),),
           (("DATABASE_URL", "postgresql://app:app@db:5432/app"),)),
    Choice("mysql", "MySQL-compatible: MariaDB", "mysql", (("Dockerfile", _MARIADB),),
           {"ports": [3306], "ready": {"exec": ["mariadb-admin", "ping", "-h", "127.0.0.1", "--silent"],
                                       "timeout": "90s"}},
           (("MYSQL_URL", _url("mysql", "mysql", 3306, "/app", "app:app@")),),
           (("MYSQL_URL", "mysql://app:app@mysql:3306/app"),)),
    Choice("redis", "Redis", "cache", (("Dockerfile", _REDIS),), {"ports": [6379], "ready": {"tcp": 6379}},
           (("REDIS_URL", _url("redis", "cache", 6379, "/0")),), (("REDIS_URL", "redis://cache:6379/0"),)),
    Choice("rabbitmq", "RabbitMQ", "queue", (("Dockerfile", _RABBITMQ),),
           {"ports": [5672], "ready": {"exec": ["rabbitmq-diagnostics", "-q", "ping"], "timeout": "120s"}},
           (("AMQP_URL", _url("amqp", "queue", 5672, "/", "guest:guest@")),), (("AMQP_URL", "amqp://guest:guest@queue:5672/"),)),
    Choice("stub", "An HTTP stub of an external API (answers from routes.json)", "stub",
           (("Dockerfile", _PYTHON + 'COPY server.py routes.json /srv/\nUSER nobody\nEXPOSE 8000\n'
                                     'CMD ["python3", "-u", "/srv/server.py"]\n'),
            ("server.py", _STUB_SERVER), ("routes.json", _ROUTES)),
           {"ports": [8000], "ready": {"http": {"port": 8000, "path": "/health", "status": 200}}},
           (("STUB_URL", _url("http", "stub", 8000)),), (("STUB_URL", "http://stub:8000"),)),
    Choice("app", "Your app, built from a Dockerfile (a placeholder until you have one)", "app",
           (("Dockerfile", "# A placeholder: replace it with your app's Dockerfile (serve GET /health on :8000).\n"
                           + _PYTHON + 'COPY server.py /srv/\nUSER nobody\nEXPOSE 8000\n'
                           'CMD ["python3", "-u", "/srv/server.py"]\n'),
            ("server.py", _APP_SERVER)),
           {"ports": [8000], "ready": {"http": {"port": 8000, "path": "/health", "status": 200}}},
           (("APP_URL", _url("http", "app", 8000)),)),
)}


def starter(name: str, keys: list[str], app_context: str | None = None) -> dict[str, str]:
    """The files of a new blueprint folder (relative path → text) for the chosen menu ``keys``.
    ``app_context``: the folder of your own app's Dockerfile, relative to the blueprint (then no
    placeholder is written for it)."""
    chosen = sorted((CHOICES[k] for k in dict.fromkeys(keys)), key=lambda c: c.key == "app")  # the app last
    files: dict[str, str] = {}
    services: dict[str, Any] = {}
    outputs: dict[str, str] = {}
    for c in chosen:
        context = app_context if c.key == "app" and app_context else f"./images/{c.service}"
        if context.startswith("./images/"):
            files.update({f"images/{c.service}/{f}": text for f, text in c.files})
        spec = {"build": context, **c.spec}
        if c.key == "app":
            others = [o for o in chosen if o.key != "app"]
            if others:
                spec["environment"] = {k: v for o in others for k, v in o.env}
                spec["depends_on"] = [o.service for o in others]
        services[c.service] = spec
        outputs.update(c.outputs)
    head = ["# yaml-language-server: $schema=.envkit/blueprint.schema.json",
            f"# Made by `envkit init --with {','.join(c.key for c in chosen)}`. Check it: envkit validate .",
            "# Bring it up: envkit up .   Reference: docs/blueprint.md (envkit graph . draws it)."]
    body = yaml.dump({"name": name, "services": services, "outputs": outputs}, Dumper=BlueprintDumper, sort_keys=False,
                     width=120)
    files["blueprint.yaml"] = "\n".join(head) + "\n" + body
    return files
