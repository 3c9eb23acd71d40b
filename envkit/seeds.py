"""What each kind of seed step does: one function per kind, looked up in ``KINDS`` by the step's type.

The executor hands a ``SeedStep`` to ``run_seed`` (``envkit.handlers``), which calls the kind's function.
Each one acts on the service's containers through the backend and returns what it did, or raises
``SeedFailed`` naming the service, the step (index, kind, file) and with the step's output.

- ``sql``: the file (or inline SQL) is copied into the container (``Capability.COPY_FILES``: one archive
  upload however big the file) and run by the service's own client: ``psql -v ON_ERROR_STOP=1 -f`` (a
  ``.sql.gz`` through ``gzip -dc``), or ``mysql --batch`` reading it on stdin; both stop at the first error, whose
  file, line and server message are reported. The client is the ``client:`` key, or found in the
  container (``psql``, then ``mariadb``, then ``mysql``; the service's environment decides which first).
- ``copy``: a tar of the file or folder (owner and mode applied) unpacked into every replica.
- ``exec``: the command (stdin from a copied-in file through ``/bin/sh``); it must exit 0.
- ``http``: one request from this machine to the container (its address, or its published port).
- ``run``: a one-off container on the service's networks, labelled with the run (role ``seed``), that
  must exit 0; removed afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from envkit.backends.base import Backend, ContainerSpec
from envkit.blueprint.model import CopySeed, ExecSeed, HttpSeed, RunSeed, SqlSeed
from envkit.errors import Conflict, EngineError, EnvkitError, NotFound, SeedFailed
from envkit.probes import Aborted, _address
from envkit.seed_log import SeedResult
from envkit.steps import SeedStep

__all__ = ["KINDS", "Run", "run_seed"]

OUTPUT_LINES = 30
STAGE = "/tmp"  # where files for a step are copied in the container, then removed


class Run:
    """What a kind's function may use: the backend, the containers by name, the abort flag, the step."""

    def __init__(self, backend: Backend, containers: Mapping[str, str], abort: Any, step: SeedStep,
                 record: Callable[[str, str], None], remaining: Callable[[float], float]) -> None:
        self.backend, self.containers, self.abort, self.step = backend, containers, abort, step
        self.record = record  # (container id, name) of a container the step made, for the ledger
        self.remaining = remaining
        self.exit_code: int | None = None  # what came back, for the step's result (envkit.seed_log)
        self.http_status: int | None = None
        self.output = ""

    def result(self, started: float, took: float, error: EnvkitError | None = None) -> SeedResult:
        """What the step did, for the forensics bundle."""
        p = self.step
        kind, _, rest = p.shown.partition(" ")
        if isinstance(error, SeedFailed):
            kind, rest, lines = error.kind, error.file, list(error.output)
        else:
            lines = [ln for ln in self.output.splitlines() if ln.strip()]
        why = "" if error is None else (error.reason if isinstance(error, SeedFailed) else str(error).splitlines()[0])
        return SeedResult(p.service, p.index, p.total, kind, rest, started, took, self.exit_code, self.http_status,
                          tuple(lines[-OUTPUT_LINES:]), why)

    def container(self, name: str | None = None) -> str:
        return self.containers[name or self.step.containers[0]]

    def fail(self, reason: str, output: str | list[str] = "", file: str = "") -> SeedFailed:
        p = self.step
        lines = output if isinstance(output, list) else [ln for ln in output.splitlines() if ln.strip()]
        kind, _, rest = p.shown.partition(" ")
        return SeedFailed(p.service, p.index, p.total, kind, file or rest, reason, lines[-OUTPUT_LINES:],
                          p.containers[0] if p.containers else "")

    def exec(self, command: tuple[str, ...], timeout: float, user: str | None = None) -> tuple[int, str]:
        budget = max(1.0, self.remaining(timeout))
        try:
            result = self.backend.exec(self.container(), command, user, timeout=budget)
        except NotFound as exc:
            raise self.fail(f"the container is gone ({exc})") from exc
        self.exit_code, self.output = result.exit_code, result.output
        return result.exit_code, result.output

    def stage(self, name: str, data: bytes) -> str:
        """Copy ``data`` into the first replica as a file of its own; returns its path there."""
        path = f"{STAGE}/envkit-seed-{self.step.index}-{name}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        try:
            self.backend.copy_into(self.container(), STAGE, buffer.getvalue())
        except NotFound as exc:
            raise self.fail(f"cannot copy the file in: the container has no {STAGE} folder ({exc})") from exc
        return path

    def unstage(self, path: str) -> None:
        # As root: the file is root's (as copied in), and /tmp's sticky bit keeps other users from removing it.
        with contextlib.suppress(EngineError):  # a file left in /tmp of a throw-away container is no failure
            self.backend.exec(self.container(), ("rm", "-f", path), "0", timeout=10)


def _rel(p: SeedStep, path: Path) -> str:
    text = os.path.relpath(path, p.directory)
    return str(path) if text.startswith("..") else text


# -- sql -------------------------------------------------------------------------------------------------
_PSQL_ERROR = re.compile(r"^psql:(?P<file>.+?):(?P<line>\d+): (?P<message>.*)$", re.M)
_MYSQL_ERROR = re.compile(r"^ERROR (?P<code>\d+ \([0-9A-Z]+\)) at line (?P<line>\d+)(?: in file: '[^']*')?: "
                          r"(?P<message>.*)$", re.M)


def _client(run: Run, item: SqlSeed, env: dict[str, str]) -> str:
    if item.client is not None:
        return item.client
    order = ["psql", "mariadb", "mysql"]
    if any(k.startswith(("MYSQL_", "MARIADB_")) for k in env) and not any(k.startswith("POSTGRES_") for k in env):
        order = ["mariadb", "mysql", "psql"]
    for name in order:
        code, _ = run.exec((name, "--version"), 30)
        if code == 0:
            return name
    raise run.fail("no SQL client in the container (tried psql, mariadb, mysql); name one with 'client:', "
                   "or use an exec step")


def _sql_argv(run: Run, item: SqlSeed, client: str, env: dict[str, str], path: str) -> tuple[str, ...]:
    gz = path.endswith(".gz")
    if client == "psql":
        user = item.user or env.get("POSTGRES_USER") or "postgres"
        database = item.database or env.get("POSTGRES_DB") or user
        argv: tuple[str, ...] = ("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"run_id={run.step.run_id}",
                                 "-U", user, "-d", database, "-f", "-" if gz else path)
        secret = ("PGPASSWORD", item.password) if item.password else None
    else:
        user = item.user or "root"
        database = item.database or env.get("MYSQL_DATABASE") or env.get("MARIADB_DATABASE") or ""
        password = item.password or (env.get("MYSQL_ROOT_PASSWORD") or env.get("MARIADB_ROOT_PASSWORD")
                                     if user == "root" else env.get("MYSQL_PASSWORD") or env.get("MARIADB_PASSWORD"))
        argv = (client, "--user", user, *(("--database", database) if database else ()), "--batch")
        secret = ("MYSQL_PWD", password) if password else None
    if secret:
        argv = ("env", f"{secret[0]}={secret[1]}", *argv)
    if gz:
        argv = ("sh", "-c", 'gzip -dc "$0" | "$@"', path, *argv)
    elif client != "psql":
        # On stdin, not `--execute="source FILE"`: `source` goes on after an error and exits 0 (measured
        # on MariaDB 10.11); in batch mode from stdin the client stops at the first error, exit code 1.
        argv = ("sh", "-c", 'exec "$@" < "$0"', path, *argv)
    return argv


def _sql_reason(output: str, where: str, staged: str) -> str:
    m = _PSQL_ERROR.search(output)
    if m:
        return f"{where}:{m.group('line')}: {m.group('message').strip()}"
    m = _MYSQL_ERROR.search(output)
    if m:
        return f"{where}:{m.group('line')}: ERROR {m.group('code')}: {m.group('message').strip()}"
    lines = [ln for ln in output.replace(staged, where).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "the client failed and printed nothing"


def _sql(run: Run, item: SqlSeed) -> str:
    p = run.step
    env = dict(p.environment)
    if item.file is not None:
        where = _rel(p, item.file)
        data, name = item.file.read_bytes(), item.file.name
    else:
        where, data, name = "inline SQL", (item.inline or "").encode(), "inline.sql"
    client = _client(run, item, env)
    staged = run.stage(name, data)
    began = time.monotonic()
    try:
        code, output = run.exec(_sql_argv(run, item, client, env, staged), item.timeout)
    finally:
        run.unstage(staged)
    if code == -1 and output.endswith("s)"):
        raise run.fail(f"{client} still running after {item.timeout:g}s (raise its 'timeout')", output, where)
    if code != 0:
        raise run.fail(_sql_reason(output, where, staged), output.replace(staged, where), where)
    return f"{where}: {client} done in {time.monotonic() - began:.2f}s"


# -- copy ------------------------------------------------------------------------------------------------
def _archive(item: CopySeed) -> bytes:
    uid, _, gid = (item.owner or "0:0").partition(":")

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid = int(uid), int(gid or uid)
        info.uname = info.gname = ""
        if item.mode is not None and info.isfile():
            info.mode = item.mode
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(item.source, arcname=os.path.basename(item.target.rstrip("/")) or ".", filter=own)
    return buffer.getvalue()


def _copy(run: Run, item: CopySeed) -> str:
    parent = os.path.dirname(item.target.rstrip("/")) or "/"
    archive = _archive(item)
    for name in run.step.containers:
        ident = run.container(name)
        try:
            run.backend.copy_into(ident, parent, archive)
        except NotFound:
            # The folder it goes into is missing: make it (as the container's user), then copy again.
            made = run.backend.exec(ident, ("mkdir", "-p", parent), timeout=30)
            if made.exit_code != 0:
                raise run.fail(f"folder {parent} does not exist in {name} and cannot be made", made.output) from None
            run.backend.copy_into(ident, parent, archive)
    return f"copied {_rel(run.step, item.source)} to {item.target}"


# -- exec ------------------------------------------------------------------------------------------------
def _exec(run: Run, item: ExecSeed) -> str:
    argv, staged = item.command, ""
    if item.stdin is not None:
        staged = run.stage(item.stdin.name, item.stdin.read_bytes())
        argv = ("/bin/sh", "-c", 'exec "$@" < "$0"', staged, *argv)
    try:
        code, output = run.exec(argv, item.timeout, item.user)
    finally:
        if staged:
            run.unstage(staged)
    if code == -1 and output.endswith("s)"):
        raise run.fail(f"still running after {item.timeout:g}s (raise its 'timeout')", output)
    if code != 0:
        hint = " (command not found in the container)" if code in (126, 127) else ""
        raise run.fail(f"exited with code {code}{hint}", output)
    return f"exit 0: {' '.join(item.command)}"


# -- http ------------------------------------------------------------------------------------------------
def _http(run: Run, item: HttpSeed) -> str:
    assert item.port is not None  # filled in by the planner
    state = run.backend.inspect_container(run.container())
    where = _address(run.backend, state, item.port)
    if where is None:
        raise run.fail(f"port {item.port} is not published and the engine's network is not routable from here")
    headers = dict(item.headers)
    body: bytes | None = None
    if item.json is not None:
        body = item.json.encode()
        headers.setdefault("Content-Type", "application/json")
    elif item.body is not None:
        body = item.body.read_bytes()
        headers.setdefault("Content-Type", "application/octet-stream")
    conn = http.client.HTTPConnection(where[0], where[1], timeout=run.remaining(item.timeout))
    request = f"{item.method} {item.path}"
    try:
        conn.request(item.method, item.path, body=body, headers={"User-Agent": "envkit-seed", **headers})
        response = conn.getresponse()
        text = response.read(65536).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise run.fail(f"{request} (port {item.port}): {getattr(exc, 'strerror', None) or exc}") from exc
    finally:
        conn.close()
    run.http_status, run.output = response.status, text[:4000]
    ok = response.status == item.status if item.status else 200 <= response.status < 300
    if not ok:
        expected = str(item.status) if item.status else "a 2xx status"
        raise run.fail(f"{request} answered {response.status}, expected {expected}", text[:4000])
    return f"{request}: {response.status}"


# -- run -------------------------------------------------------------------------------------------------
def _run(run: Run, item: RunSeed) -> str:
    p = run.step
    assert p.image is not None
    spec = ContainerSpec(name=p.name, image=p.image, labels=p.labels, networks=p.networks, command=item.command,
                         entrypoint=item.entrypoint, environment=item.environment, user=item.user,
                         working_dir=item.working_dir)
    backend = run.backend
    try:
        ident = backend.create_container(spec)
    except Conflict:  # left by an earlier `envkit seed` that was killed: it is this run's, replace it
        backend.remove_container(backend.inspect_container(p.name).id, 0)
        ident = backend.create_container(spec)
    run.record(ident, p.name)
    try:
        backend.start_container(ident)
        deadline = time.monotonic() + run.remaining(item.timeout)
        code: int | None = None
        while code is None:
            if run.abort.is_set():
                raise Aborted()
            left = deadline - time.monotonic()
            if left <= 0:
                raise run.fail(f"still running after {item.timeout:g}s (raise its 'timeout')",
                               backend.logs(ident, tail=OUTPUT_LINES))
            code = backend.wait_container(ident, min(left, 0.5))
        run.exit_code = code
        if code != 0:
            raise run.fail(f"{p.name} exited with code {code}", backend.logs(ident, tail=OUTPUT_LINES))
    except EngineError as exc:
        raise run.fail(f"cannot run {p.image}: {exc}") from exc
    finally:
        backend.remove_container(ident, 0)
    return f"{p.name} exited 0"


#: seed item type -> what it does (each takes its own item type)
KINDS: Mapping[type, Callable[[Run, Any], str]] = {
    SqlSeed: _sql,
    CopySeed: _copy,
    ExecSeed: _exec,
    HttpSeed: _http,
    RunSeed: _run,
}


def run_seed(run: Run) -> str:
    return KINDS[type(run.step.seed)](run, run.step.seed)
