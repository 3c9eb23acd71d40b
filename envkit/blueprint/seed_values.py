"""Readers of a service's ``seed:`` list: one reader per kind of step (sql, copy, exec, http, run).

Each list item is a mapping with exactly one kind key; its value is the kind's short form (a string or a
command) or its long form, a mapping read through the kind's table in ``keys.py``. Files are resolved
against the blueprint's folder and must exist when the blueprint is loaded. ``${VAR}`` was substituted
before (``interpolate.py``); the only run references a seed may hold are ``${run.id}`` / ``${run.name}``,
resolved when the plan is made.

A new kind of seed step is a model type (``model.py``), a reader and its table here and in ``keys.py``,
and a handler in ``envkit.seeds``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from envkit.blueprint import refs
from envkit.blueprint.model import CopySeed, ExecSeed, HttpSeed, RunSeed, Seed, SqlSeed
from envkit.blueprint.readers import Reader, Table, read_keys, show
from envkit.blueprint.source import Key

__all__ = ["CLIENTS", "KINDS", "KindReader", "absolute", "client", "copy", "exec_", "file", "http", "json_body",
           "kind_error", "method", "mode", "owner", "run", "seeds", "sql", "url_path", "writes"]

CLIENTS = ("psql", "mysql", "mariadb")
WRITES = ("dependencies", "own")  # an exec, http or run step's `writes`
KINDS = ("sql", "copy", "exec", "http", "run")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_OWNER = re.compile(r"^\d+(?::\d+)?$")


#: reads one kind's value (its table bound in): ``keys.SEED_READERS``
KindReader = Callable[[Reader, Any, Key], "Seed | None"]


def seeds(r: Reader, value: Any, path: Key, item: Table, kinds: Mapping[str, KindReader]) -> tuple[Seed, ...]:
    """The ``seed:`` list: every item one step of one kind."""
    return tuple(r.items(value, path, "seed steps", lambda v, q: _step(r, v, q, item, kinds)))


def _step(r: Reader, value: Any, path: Key, item: Table, kinds: Mapping[str, KindReader]) -> Seed | None:
    spec = r.mapping(value, path, "a seed step ({sql: ...}, {copy: ...}, {exec: ...}, {http: ...} or {run: ...})")
    if spec is None:
        return None
    r.keys(spec, path, item)
    found = [k for k in KINDS if k in spec]
    if len(found) != 1:
        r.error(path, "a seed step needs exactly one of: " + ", ".join(KINDS)
                + (f" (found {', '.join(found)})" if found else ""))
        return None
    kind = found[0]
    q = (*path, kind)
    _check_refs(r, spec[kind], q)
    return kinds[kind](r, spec[kind], q)


def _check_refs(r: Reader, value: Any, path: Key) -> None:
    """Seeds run before any output exists: of the run's values only its id is known to them."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_refs(r, v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_refs(r, v, (*path, i))
    elif isinstance(value, str):
        for match in refs.REF.finditer(value):
            body = match.group("ref")
            try:
                ref = refs.parse(body)
            except refs.BadRef as bad:
                r.error(path, str(bad))
                continue
            if not isinstance(ref, refs.RunRef):
                r.error(path, f"'${{{body}}}' is not known to a seed step; use ${{run.id}} (or the service's "
                              "DNS name on the run's networks, e.g. db)")


def file(r: Reader, value: Any, path: Key, what: str = "a file") -> Path | None:
    """A file beside the blueprint, which must exist now."""
    text = r.string(value, path, f"{what} path")
    if text is None:
        return None
    found = (r.directory / Path(text).expanduser()).resolve()
    if not found.is_file():
        r.error(path, f"{what} '{text}' does not exist (looked at {r.shown(text)}; "
                      "paths are relative to the blueprint's folder)")
        return None
    return found


def _long(r: Reader, value: Any, path: Key, keys: Table, what: str) -> dict[str, Any] | None:
    spec = r.mapping(value, path, what)
    if spec is None:
        return None
    r.keys(spec, path, keys)
    return spec


def sql(r: Reader, value: Any, path: Key, keys: Table) -> SqlSeed | None:
    if isinstance(value, str):
        # A lone word ending in .sql / .sql.gz names a file; anything else is SQL.
        if re.fullmatch(r"\S+\.sql(?:\.gz)?", value.strip()):
            found = file(r, value.strip(), path, "SQL file")
            return SqlSeed(file=found, at=path) if found else None
        if not value.strip():
            r.error(path, "an sql step needs a file or some SQL")
            return None
        return SqlSeed(inline=value, at=path)
    spec = _long(r, value, path, keys, "SQL: a file path, inline SQL, or {file | inline, client, database, ...}")
    if spec is None:
        return None
    if ("file" in spec) == ("inline" in spec):
        r.error(path, "an sql step needs exactly one of 'file' and 'inline'")
        return None
    values = read_keys(r, keys, spec, path)
    if values["file"] is None and values["inline"] is None:
        return None
    return SqlSeed(**values, at=path)


def client(r: Reader, value: Any, path: Key) -> str | None:
    if value not in CLIENTS:
        r.error(path, f"unknown SQL client {show(value)}; use {', '.join(CLIENTS)} (or leave it out: detected)")
        return None
    return cast(str, value)


def writes(r: Reader, value: Any, path: Key) -> str | None:
    if value not in WRITES:
        r.error(path, f"expected {' or '.join(WRITES)}, got {show(value)} (own: the step writes into its service "
                      "alone; dependencies: it may write into the services its service depends on)")
        return None
    return cast(str, value)


def owner(r: Reader, value: Any, path: Key) -> str | None:
    text = r.string(value, path, "an owner")
    if text is not None and not _OWNER.match(text):
        r.error(path, f"expected a numeric owner 'uid' or 'uid:gid', got {show(value)}")
        return None
    return text


def mode(r: Reader, value: Any, path: Key) -> int | None:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not re.fullmatch(r"0?o?[0-7]{3,4}", text):
        r.error(path, f"expected an octal mode like '0644' (quoted), got {show(value)}")
        return None
    return int(text.replace("o", ""), 8)


def absolute(r: Reader, value: Any, path: Key) -> str | None:
    text = r.string(value, path, "a path in the container")
    if text is not None and not text.startswith("/"):
        r.error(path, f"'{text}' must be an absolute path inside the container")
        return None
    return text


def copy(r: Reader, value: Any, path: Key, keys: Table) -> CopySeed | None:
    spec = _long(r, value, path, keys, "{source, target, owner, mode}")
    if spec is None:
        return None
    missing = [k for k in ("source", "target") if k not in spec]
    if missing:
        r.error(path, f"a copy step needs {' and '.join(repr(k) for k in missing)}")
        return None
    text = r.string(spec["source"], (*path, "source"), "a source path")
    values = read_keys(r, keys, spec, path)
    if text is None or values["target"] is None:
        return None
    source = (r.directory / Path(text).expanduser()).resolve()
    if not source.exists():
        r.error((*path, "source"), f"copy source '{text}' does not exist (looked at {r.shown(text)}; "
                                   "paths are relative to the blueprint's folder)")
        return None
    values.pop("source", None)
    return CopySeed(source=source, **values, at=path)


def exec_(r: Reader, value: Any, path: Key, keys: Table) -> ExecSeed | None:
    if isinstance(value, str | list):
        value = {"command": value}
    spec = _long(r, value, path, keys, "a command, or {command, stdin, user, timeout, writes}")
    if spec is None:
        return None
    if "command" not in spec:
        r.error(path, "an exec step needs a 'command'")
        return None
    values = read_keys(r, keys, spec, path)
    if values["command"] == ():
        r.error((*path, "command"), "an exec step needs a command")
    if not values["command"]:
        return None
    return ExecSeed(**values, at=path)


def http(r: Reader, value: Any, path: Key, keys: Table) -> HttpSeed | None:
    if isinstance(value, str):
        method, _, rest = value.strip().partition(" ")
        value = {"method": method, "path": rest.strip()} if rest else {"path": method}
    spec = _long(r, value, path, keys, "\"POST /path\", or {method, path, port, json, body, headers, status, writes}")
    if spec is None:
        return None
    if "path" not in spec:
        r.error(path, "an http step needs a 'path'")
        return None
    if "json" in spec and "body" in spec:
        r.error(path, "an http step takes 'json' or 'body', not both")
        return None
    values = read_keys(r, keys, spec, path)
    if values["path"] is None:
        return None
    return HttpSeed(**values, at=path)


def method(r: Reader, value: Any, path: Key) -> str | None:
    text = str(value).upper() if isinstance(value, str) else None
    if text not in _METHODS:
        r.error(path, f"unknown HTTP method {show(value)}; use {', '.join(_METHODS)}")
        return None
    return text


def url_path(r: Reader, value: Any, path: Key) -> str | None:
    text = r.string(value, path, "a URL path")
    if text is None:
        return None
    if not text.startswith("/") or not text.isascii() or any(c.isspace() for c in text):
        r.error(path, f"HTTP path must start with '/' and be URL-encoded, got {show(text)}")
        return None
    return text


def json_body(r: Reader, value: Any, path: Key) -> str | None:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # YAML dates, for one
        r.error(path, f"cannot send this as JSON: {exc}")
        return None


def run(r: Reader, value: Any, path: Key, keys: Table, build_keys: Table,
        build: Callable[[Reader, Any, Key, Table], Any]) -> RunSeed | None:
    spec = _long(r, value, path, keys, "{image | build, command, environment, ...}")
    if spec is None:
        return None
    if "image" in spec and "build" in spec:
        r.error((*path, "image"), "use either 'image' or 'build', not both")
        return None
    values = read_keys(r, keys, spec, path)
    if "build" in spec:
        values["build"] = build(r, spec["build"], (*path, "build"), build_keys)
        if values["build"] is None:
            return None
    return RunSeed(**values, at=path)


def kind_error(r: Reader, svc_kind: str, steps: tuple[Seed, ...]) -> None:
    """A job has exited by the time its seeds run: only a ``run`` step can act for it."""
    if svc_kind != "job":
        return
    for step in steps:
        if not isinstance(step, RunSeed):
            r.error(step.at, f"a job has exited when its seeds run: its container is gone for the {step.kind} step "
                             "(use a 'run' step, or seed the service the job works on)")
