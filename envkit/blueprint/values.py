"""Readers of the values that need more than a primitive: short and long forms (build, ports, volumes,
networks, depends_on, ready), and the checks of one key's own (environment names, label namespace, sizes).

Each has the ``ReadFn`` signature ``(reader, value, path)``, or takes the table of its own sub-keys as a
further argument (the tables live in ``keys.py``, which refers to these functions).
Items of a list or mapping carry ``at``, the key path they came from, so that errors found later (on the
model) point at the right line even after an item was dropped or de-duplicated.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from envkit.blueprint.model import Attachment, Build, Condition, Dependency, Mount, Port, Probe
from envkit.blueprint.readers import Reader, Table, kind_of, read_keys, show
from envkit.blueprint.scalars import (
    ALLOWANCES,
    CAPABILITIES,
    allow,
    cap_add,
    cpus,
    environment,
    host_ip,
    kind,
    memory,
    replicas,
    secret_form,
    user_labels,
)
from envkit.blueprint.source import Key

__all__ = [
    "ALLOWANCES",
    "CAPABILITIES",
    "CONDITIONS",
    "DEFAULT_PROBE_TIMEOUT",
    "PROBE_KINDS",
    "allow",
    "build",
    "cap_add",
    "cpus",
    "depends_on",
    "environment",
    "host_ip",
    "host_path",
    "kind",
    "memory",
    "mounts",
    "ports",
    "ready",
    "replicas",
    "secret_form",
    "service_networks",
    "tmpfs",
    "ulimits",
    "user_labels",
]

PROBE_KINDS = ("tcp", "http", "exec", "log", "healthcheck")
CONDITIONS = ("started", "ready", "completed")
DEFAULT_PROBE_TIMEOUT = 60.0


def host_path(r: Reader, text: str, path: Key, what: str) -> Path | None:
    """A host path from the blueprint, resolved against its folder (``~`` expanded, links followed); a path
    the system cannot even look at (too long, a NUL byte, a loop of links, an unknown ``~user``) is a problem."""
    try:
        resolved = (r.directory / Path(text).expanduser()).resolve()
        resolved.exists()  # a name too long for the system fails here, not later
        return resolved
    except (OSError, ValueError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        r.error(path, f"{what} {show(text)} is not a usable path ({reason})")
        return None


def build(r: Reader, value: Any, path: Key, keys: Table) -> Build | None:
    short = isinstance(value, str)
    if short:
        value = {"context": value}
    spec = r.mapping(value, path, "a build context path or {context, dockerfile, args, target}")
    if spec is None:
        return None
    r.keys(spec, path, keys)
    if "context" not in spec:
        r.error(path, "build needs a 'context' (a folder next to the blueprint)")
        return None
    ctx_path: Key = path if short else (*path, "context")
    context_text = r.string(spec["context"], ctx_path, "a folder path")
    if context_text is None:
        return None
    context = host_path(r, context_text, ctx_path, "build context")
    if context is None:
        return None
    values = read_keys(r, keys, spec, path)
    dockerfile = values["dockerfile"]
    if not context.is_dir():
        r.error(ctx_path, f"build context '{context_text}' is not a folder (looked at {r.shown(context_text)}; "
                          "paths are relative to the blueprint's folder)")
    elif host_path(r, os.path.join(context_text, dockerfile), ctx_path, "Dockerfile") is None:
        return None
    elif not (context / dockerfile).is_file():
        r.error(ctx_path, f"build context '{context_text}' has no {dockerfile} (looked for "
                          f"{r.shown(os.path.join(context_text, dockerfile))}; add it, or name another file "
                          "with 'dockerfile:')")
    return Build(context=context, **values)


def service_networks(r: Reader, value: Any, path: Key) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    out: list[Attachment] = []
    if isinstance(value, list):
        for i, raw in enumerate(value):
            q: Key = (*path, i)
            name = r.string(raw, q, "a network name")
            if name is None:
                continue
            if any(a.network == name for a in out):
                r.error(q, f"network '{name}' listed twice")
                continue
            out.append(Attachment(name, (), q))  # the item's own index in the file, for later errors
        return tuple(out)
    spec = r.mapping(value, path, "networks (a list or a mapping)")
    for name, raw in (spec or {}).items():
        opts = r.mapping(raw, (*path, name), "network options") or {}
        r.keys(opts, (*path, name), ("aliases",))
        aliases = r.items(opts.get("aliases"), (*path, name, "aliases"), "aliases",
                          lambda v, q: r.string(v, q, "an alias"))
        out.append(Attachment(name, tuple(aliases), (*path, name)))
    return tuple(out)


_PORT = re.compile(r"^(?:(?:(?P<ip>[\d.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>\d{1,5})?:)?(?P<ctr>\d{1,5})(?:/(?P<proto>tcp|udp))?\Z",
                   re.ASCII)


def ports(r: Reader, value: Any, path: Key, keys: Table) -> tuple[Port, ...]:
    return tuple(r.items(value, path, "ports", lambda v, q: _port(r, v, q, keys)))


def _port(r: Reader, value: Any, path: Key, keys: Table) -> Port | None:
    if isinstance(value, bool):
        r.error(path, f"expected a port, got {show(value)}")
        return None
    if isinstance(value, int):
        value = str(value)
    short = isinstance(value, str)
    if short:
        m = _PORT.match(value.strip())
        if not m:
            r.error(path, f"invalid port {show(value)}: use 8080, \"18080:8080\", \"0.0.0.0::8080\" or 8080/udp")
            return None
        ip, host, ctr, proto = m.group("ip"), m.group("host"), m.group("ctr"), m.group("proto") or "tcp"
        value = {"container": int(ctr), "protocol": proto}
        if host:
            value["host"] = int(host)
        if ip:
            value["host_ip"] = ip.strip("[]")
    spec = r.mapping(value, path, "a port")
    if spec is None:
        return None
    r.keys(spec, path, keys)
    if "container" not in spec:
        r.error(path, "port needs 'container'")
        return None
    # Short syntax has no 'container'/'host' keys in the file: report on the item itself.
    at: Callable[[str], Key] = (lambda key: path) if short else (lambda key: (*path, key))
    values = read_keys(r, keys, spec, path, at)
    if values["container"] is None:
        return None
    return Port(**values, at=path)


def mounts(r: Reader, value: Any, path: Key, keys: Table) -> tuple[Mount, ...]:
    return tuple(r.items(value, path, "volumes", lambda v, q: _mount(r, v, q, keys)))


def _mount(r: Reader, value: Any, path: Key, keys: Table) -> Mount | None:
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            r.error(path, f"invalid volume {show(value)}: use 'name:/path', './file:/path' or add ':ro'")
            return None
        source = parts[0]
        is_bind = source.startswith((".", "/", "~"))
        value = {"type": "bind" if is_bind else "volume", "source": source, "target": parts[1],
                 "read_only": len(parts) == 3 and parts[2] == "ro"}
    spec = r.mapping(value, path, "a volume mount")
    if spec is None:
        return None
    r.keys(spec, path, keys)
    # Read in this order, each step only when the one before succeeded: a later check means
    # nothing once the mount is known to be wrong.
    mount_type = spec.get("type", "volume")
    if mount_type not in ("volume", "bind"):
        r.error((*path, "type"), f"expected volume or bind, got {show(mount_type)}")
        return None
    source_text = r.string(spec.get("source"), (*path, "source"), "a source")
    target = r.string(spec.get("target"), (*path, "target"), "a target path")
    if source_text is None or target is None:
        return None
    source = source_text
    if not target.startswith("/"):
        r.error(path, f"mount target '{target}' must be an absolute path inside the container")
        return None
    read_only = r.boolean(spec["read_only"], (*path, "read_only")) if "read_only" in spec else False
    if mount_type == "bind":
        resolved = host_path(r, source, path, "bind mount source")
        if resolved is None:
            return None
        if not resolved.exists():
            r.error(path, f"bind mount source '{source}' does not exist (looked at {r.shown(source)})")
            return None
        source = str(resolved)
    return Mount(type=mount_type, source=source, target=target, read_only=read_only, at=path)


def tmpfs(r: Reader, value: Any, path: Key) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    out: dict[str, str] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            text = r.string(item, (*path, i), "a path")
            if text is not None:
                target, _, opts = text.partition(":")
                out[target] = opts
    elif isinstance(value, dict):
        out = {k: "" if v is None else str(v) for k, v in value.items()}
    else:
        r.error(path, f"expected tmpfs paths (a list), got {kind_of(value)}")
    for target in out:
        if not target.startswith("/"):
            r.error(path, f"tmpfs path '{target}' must be absolute")
    return tuple(sorted(out.items()))


#: the resource limits an engine sets per container (setrlimit(2) names, as `docker run --ulimit` takes them)
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")


def ulimits(r: Reader, value: Any, path: Key) -> tuple[tuple[str, int, int], ...]:
    """Compose's form: ``{nofile: {soft: 20000, hard: 40000}, nproc: 65535}`` (one number: soft and hard);
    -1 is unlimited. -> (name, soft, hard), by name."""
    data = r.mapping(value, path, "ulimits (name -> a number, or {soft, hard})")
    out: list[tuple[str, int, int]] = []

    def number(raw: Any, q: Key) -> int | None:
        text = raw.strip() if isinstance(raw, str) else raw
        if isinstance(text, str) and re.fullmatch(r"-?\d{1,19}", text, re.ASCII):
            text = int(text)
        if isinstance(text, bool) or not isinstance(text, int) or not -1 <= text < 2**63:
            r.error(q, f"expected a limit (a whole number, -1: unlimited), got {show(raw)}")
            return None
        return text

    for name, limit in (data or {}).items():
        q: Key = (*path, name)
        if name not in ULIMITS:
            close = difflib.get_close_matches(str(name), ULIMITS, n=1)
            r.error(q, f"unknown ulimit {show(name)}" + (f" (did you mean '{close[0]}'?)" if close
                                                         else f"; known: {', '.join(ULIMITS)}"))
            continue
        if isinstance(limit, dict):
            r.keys(limit, q, ("soft", "hard"))
            if "soft" not in limit or "hard" not in limit:
                r.error(q, "expected both soft and hard, or one number for both")
                continue
            soft, hard = number(limit["soft"], (*q, "soft")), number(limit["hard"], (*q, "hard"))
        else:
            soft = hard = number(limit, q)
        if soft is None or hard is None:
            continue
        if hard != -1 and (soft == -1 or soft > hard):
            r.error(q, f"the soft limit ({soft}) is above the hard one ({hard})")
            continue
        out.append((str(name), soft, hard))
    return tuple(sorted(out))


def depends_on(r: Reader, value: Any, path: Key) -> tuple[Dependency, ...]:
    if value is None:
        return ()
    out: list[Dependency] = []
    if isinstance(value, list):
        for i, raw in enumerate(value):
            q: Key = (*path, i)
            name = r.string(raw, q, "a service name")
            if name is None:
                continue
            if any(d.service == name for d in out):
                r.error(q, f"service '{name}' listed twice")
                continue
            out.append(Dependency(name, "ready", q))  # the item's own index in the file, for later errors
        return tuple(out)
    spec = r.mapping(value, path, "depends_on (a list or a mapping)")
    for dep, raw in (spec or {}).items():
        q = (*path, dep)
        if isinstance(raw, str):
            raw = {"condition": raw}
        opts = r.mapping(raw, q, "{condition: started|ready|completed}") or {}
        r.keys(opts, q, ("condition",))
        cond = opts.get("condition", "ready")
        if cond not in CONDITIONS:
            r.error((*q, "condition"), f"unknown condition {show(cond)}; use started, ready or completed")
            continue
        out.append(Dependency(dep, cast(Condition, cond), q))
    return tuple(out)


def ready(r: Reader, value: Any, path: Key, keys: Table, http_keys: Table) -> Probe | None:
    if value is None:  # `ready:` with nothing: no probe
        return None
    if value == "healthcheck":
        return Probe(kind="healthcheck")
    spec = r.mapping(value, path, "a readiness probe ({tcp: PORT}, {http: ...}, {exec: [...]}, {log: REGEX})")
    if spec is None:
        return None
    r.keys(spec, path, keys)
    kinds = [k for k in PROBE_KINDS if k in spec]
    if len(kinds) != 1:
        r.error(path, "a probe needs exactly one of: " + ", ".join(PROBE_KINDS))
        return None
    probe_kind = kinds[0]
    timeout = DEFAULT_PROBE_TIMEOUT
    if "timeout" in spec:
        given = r.duration(spec["timeout"], (*path, "timeout"))
        if given is not None and given <= 0:
            r.error((*path, "timeout"), "a probe timeout must be longer than 0s")
        timeout = given or DEFAULT_PROBE_TIMEOUT
    q = (*path, probe_kind)
    raw = spec[probe_kind]
    if probe_kind == "tcp":
        port = r.integer(raw, q, 1, 65535, "a container port")
        return Probe(kind="tcp", timeout=timeout, port=port) if port else None
    if probe_kind == "http":
        return _http(r, raw, q, timeout, http_keys)
    if probe_kind == "exec":
        command = r.argv(raw, q)
        if command == ():
            r.error(q, "an exec probe needs a command")
        return Probe(kind="exec", timeout=timeout, command=command) if command else None
    if probe_kind == "log":
        pattern = r.string(raw, q, "a regex")
        if pattern is None or not _valid_regex(r, pattern, q):
            return None
        return Probe(kind="log", timeout=timeout, pattern=pattern)
    if raw is False:  # Compose's `healthcheck: {disable: true}`: the engine does not run the image's check
        return Probe(kind="none", timeout=timeout)
    if raw is not True:
        r.error(q, "use 'healthcheck: true' to wait for the image's own HEALTHCHECK ('false' turns it off)")
        return None
    return Probe(kind="healthcheck", timeout=timeout)


def _http(r: Reader, raw: Any, q: Key, timeout: float, keys: Table) -> Probe | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"port": raw}
    opts = r.mapping(raw, q, "{port, path, status, body}")
    if opts is None:
        return None
    r.keys(opts, q, keys)
    port = r.integer(opts.get("port"), (*q, "port"), 1, 65535, "a container port")
    status = r.integer(opts["status"], (*q, "status"), 100, 599, "an HTTP status") if "status" in opts else None
    body = r.string(opts["body"], (*q, "body"), "a regex") if "body" in opts else None
    if body is not None and not _valid_regex(r, body, (*q, "body")):
        return None
    http_path = r.string(opts.get("path", "/"), (*q, "path")) or "/"
    if not http_path.startswith("/"):
        r.error((*q, "path"), f"HTTP path must start with '/', got {show(http_path)}")
    elif not http_path.isascii() or any(c.isspace() for c in http_path):
        r.error((*q, "path"), f"HTTP path must be URL-encoded (no spaces or non-ASCII), got {show(http_path)}")
    return Probe(kind="http", timeout=timeout, port=port, path=http_path, status=status, body=body) if port else None


def _valid_regex(r: Reader, pattern: str, path: Key) -> bool:
    try:
        re.compile(pattern)
    except re.error as exc:
        r.error(path, f"invalid regex: {exc}")
        return False
    return True
