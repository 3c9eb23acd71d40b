"""Plain data → typed model: short syntax expanded to long syntax, defaults filled, paths resolved.

Every value is checked for its type here, and every problem is collected (not just the first) with the
key path and position it came from. Cross-references between services, networks, volumes and outputs
are checked afterwards, on the model (``validate.py``).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from envkit.blueprint.model import (
    Attachment,
    Blueprint,
    Build,
    Condition,
    Dependency,
    Mount,
    NetworkDef,
    Port,
    Probe,
    Service,
    VolumeDef,
)
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem
from envkit.labels import NS

__all__ = ["normalize", "parse_duration", "parse_size"]

T = TypeVar("T")

TOP_KEYS = ("name", "networks", "volumes", "services", "outputs")
SERVICE_KEYS = (
    "image", "build", "kind", "command", "entrypoint", "environment", "user", "working_dir", "networks",
    "ports", "volumes", "tmpfs", "labels", "memory", "cpus", "replicas", "depends_on", "ready",
    "stop_grace_period", "stop_signal", "privileged", "cap_add", "hostname", "prestart",
)
BUILD_KEYS = ("context", "dockerfile", "args", "target")
PROBE_KINDS = ("tcp", "http", "exec", "log", "healthcheck")
HTTP_KEYS = ("port", "path", "status", "body")
CONDITIONS = ("started", "ready", "completed")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
DEFAULT_PROBE_TIMEOUT = 60.0


def parse_duration(value: Any) -> float | None:
    """``60s``, ``500ms``, ``2m``, ``1h``, ``1m30s`` or a plain number of seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_size(value: Any) -> int | None:
    """``512m``, ``1g``, ``256MiB``, or a plain number of bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", value.strip().lower())
    if not m:
        return None
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(float(m.group(1)) * scale) or None


class _Reader:
    def __init__(self, marks: Marks, directory: Path) -> None:
        self.marks = marks
        self.directory = directory
        self.problems: list[Problem] = []

    def error(self, path: Key, message: str) -> None:
        self.problems.append(self.marks.problem(path, message))

    def shown(self, relative: str) -> str:
        """A path from the blueprint, as the user would type it: based on the file's path as given."""
        return os.path.normpath(Path(self.marks.file).parent / Path(relative).expanduser())

    def mapping(self, value: Any, path: Key, what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            shape = "" if what.endswith(")") else " (a mapping)"  # "depends_on (a list or a mapping)" says it
            self.error(path, f"expected {what}{shape}, got {_kind(value)}")
            return None
        return value

    def keys(self, data: dict[str, Any], path: Key, allowed: tuple[str, ...]) -> None:
        for key in data:
            if key in allowed or key.startswith("x-"):
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}"
            self.error((*path, key), f"unknown key '{key}'{hint}")

    def string(self, value: Any, path: Key, what: str = "a string") -> str | None:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            self.error(path, f"expected {what}, got {_kind(value)}")
            return None
        return str(value)

    def integer(self, value: Any, path: Key, low: int, high: int, what: str) -> int | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"expected {what} ({low}..{high}), got {_show(value)}")
            return None
        return value

    def boolean(self, value: Any, path: Key) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {_show(value)}")
            return False
        return value

    def duration(self, value: Any, path: Key) -> float | None:
        seconds = parse_duration(value)
        if seconds is None:
            self.error(path, f"expected a duration like 30s, 500ms or 2m, got {_show(value)}")
        return seconds

    def argv(self, value: Any, path: Key) -> tuple[str, ...] | None:
        """A command: a list of words, or a string split like a shell would (no shell is run)."""
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                self.error(path, f"cannot split command: {exc}")
                return None
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value) and value:
            return tuple(str(v) for v in value)
        self.error(path, f"expected a command (a list of words or a string), got {_show(value)}")
        return None

    def pairs(self, value: Any, path: Key, what: str) -> tuple[tuple[str, str], ...]:
        """A ``KEY: value`` mapping or a ``["KEY=value"]`` list, as sorted pairs of strings."""
        out: dict[str, str] = {}
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) or "=" not in item:
                    self.error((*path, i), f"expected 'KEY=value', got {_show(item)}")
                    continue
                k, v = item.split("=", 1)
                out[k] = v
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict | list):
                    self.error((*path, k), f"expected a scalar value, got {_kind(v)}")
                    continue
                out[k] = "" if v is None else _scalar_text(v)
        elif value is not None:
            self.error(path, f"expected {what} (a mapping or a list of KEY=value), got {_kind(value)}")
        return tuple(sorted(out.items()))

    def items(self, value: Any, path: Key, what: str, each: Callable[[Any, Key], T | None]) -> list[T]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected {what} (a list), got {_kind(value)}")
            return []
        found = (each(v, (*path, i)) for i, v in enumerate(value))
        return [x for x in found if x is not None]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            str: "a string"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else _kind(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalize(data: dict[str, Any], marks: Marks, file: Path, directory: Path) -> tuple[Blueprint, list[Problem]]:
    r = _Reader(marks, directory)
    r.keys(data, (), (*TOP_KEYS, "version"))
    name = _blueprint_name(r, data.get("name"), file)
    networks = _networks(r, data.get("networks"))
    volumes = _volumes(r, data.get("volumes"))
    services: dict[str, Service] = {}
    raw_services = r.mapping(data.get("services"), ("services",), "services")
    if raw_services is not None and not raw_services:
        r.error(("services",) if "services" in data else (), "a blueprint needs at least one service")
    for sname, raw in (raw_services or {}).items():
        path: Key = ("services", sname)
        if not NAME.match(sname):
            r.error(path, f"invalid service name '{sname}': use lowercase letters, digits, '-' and '_'")
            continue
        svc = _service(r, sname, raw, path)
        if svc is not None:
            services[sname] = svc
    # Services that name no network join "default", which exists without being declared.
    if any(not s.networks for s in services.values()) or ("default" in networks):
        networks.setdefault("default", NetworkDef("default"))
        services = {
            n: s if s.networks else replace(s, networks=(Attachment("default"),)) for n, s in services.items()
        }
    outputs = _outputs(r, data.get("outputs"))
    # A model is returned even when some values were wrong, so that cross-references are checked too
    # and `envkit validate` lists every problem in one go; the caller must not run it when problems exist.
    return Blueprint(name=name or "invalid", file=file, directory=directory, services=services, networks=networks,
                     volumes=volumes, outputs=outputs), r.problems


def _blueprint_name(r: _Reader, value: Any, file: Path) -> str | None:
    if value is None:
        # A folder blueprint is named after its folder, a file after its stem.
        value = file.parent.name if file.stem in ("blueprint",) else file.stem
        value = re.sub(r"[^a-z0-9_-]", "-", value.lower()).strip("-_") or "env"
    name = r.string(value, ("name",))
    if name is not None and not (NAME.match(name) and len(name) <= 40):
        r.error(("name",), f"invalid name '{name}': use up to 40 lowercase letters, digits, '-' and '_'")
        return None
    return name


def _networks(r: _Reader, value: Any) -> dict[str, NetworkDef]:
    out: dict[str, NetworkDef] = {}
    for name, raw in (r.mapping(value, ("networks",), "networks") or {}).items():
        path: Key = ("networks", name)
        if not NAME.match(name):
            r.error(path, f"invalid network name '{name}'")
            continue
        spec = r.mapping(raw, path, "a network definition")
        if spec is None:
            continue
        r.keys(spec, path, ("internal", "labels"))
        internal = r.boolean(spec["internal"], (*path, "internal")) if "internal" in spec else False
        out[name] = NetworkDef(name, internal, _user_labels(r, spec.get("labels"), (*path, "labels")))
    return out


def _volumes(r: _Reader, value: Any) -> dict[str, VolumeDef]:
    out: dict[str, VolumeDef] = {}
    for name, raw in (r.mapping(value, ("volumes",), "volumes") or {}).items():
        path: Key = ("volumes", name)
        if not NAME.match(name):
            r.error(path, f"invalid volume name '{name}'")
            continue
        spec = r.mapping(raw, path, "a volume definition")
        if spec is None:
            continue
        r.keys(spec, path, ("labels",))
        out[name] = VolumeDef(name, _user_labels(r, spec.get("labels"), (*path, "labels")))
    return out


def _user_labels(r: _Reader, value: Any, path: Key) -> tuple[tuple[str, str], ...]:
    labels = r.pairs(value, path, "labels")
    for key, _ in labels:
        if key == NS or key.startswith(NS + "."):
            r.error((*path, key), f"label '{key}' is inside envkit's own namespace '{NS}.*'; choose another")
    return tuple(kv for kv in labels if not kv[0].startswith(NS))


def _outputs(r: _Reader, value: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for key, raw in (r.mapping(value, ("outputs",), "outputs") or {}).items():
        path: Key = ("outputs", key)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            r.error(path, f"output name '{key}' must be usable as an environment variable ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        text = r.string(raw, path, "a string template")
        if text is not None:
            out.append((key, text))
    return tuple(out)


def _service(r: _Reader, name: str, raw: Any, path: Key) -> Service | None:
    spec = r.mapping(raw, path, "a service definition")
    if spec is None:
        return None
    r.keys(spec, path, SERVICE_KEYS)

    def p(key: str) -> Key:
        return (*path, key)

    image = r.string(spec["image"], p("image")) if "image" in spec else None
    build = _build(r, spec["build"], p("build")) if "build" in spec else None
    if "image" not in spec and "build" not in spec:
        r.error(path, "a service needs 'image' or 'build'")
    elif "image" in spec and "build" in spec:
        r.error(p("image"), "use either 'image' or 'build', not both")
    kind = spec.get("kind", "service")
    if kind not in ("service", "job"):
        r.error(p("kind"), f"expected 'service' or 'job', got {_show(kind)}")
        kind = "service"
    env = r.pairs(spec.get("environment"), p("environment"), "environment")
    for key, _ in env:
        if not ENV_NAME.match(key):
            r.error((*p("environment"), key), f"invalid environment variable name '{key}'")
    replicas = r.integer(spec.get("replicas", 1), p("replicas"), 1, 64, "a replica count") or 1
    memory = None
    if "memory" in spec:
        memory = parse_size(spec["memory"])
        if memory is None:
            r.error(p("memory"), f"expected a size like 256m or 1g, got {_show(spec['memory'])}")
    cpus = None
    if "cpus" in spec:
        c = spec["cpus"]
        if isinstance(c, bool) or not isinstance(c, int | float | str) or not _positive_float(c):
            r.error(p("cpus"), f"expected a positive number of CPUs, got {_show(c)}")
        else:
            cpus = float(c)
    grace = r.duration(spec["stop_grace_period"], p("stop_grace_period")) if "stop_grace_period" in spec else 0.0
    cap_add = tuple(r.items(spec.get("cap_add"), p("cap_add"), "capabilities",
                            lambda v, q: r.string(v, q, "a capability name")))
    return Service(
        name=name,
        image=image,
        build=build,
        kind=cast(Any, kind),
        command=r.argv(spec["command"], p("command")) if "command" in spec else None,
        entrypoint=r.argv(spec["entrypoint"], p("entrypoint")) if "entrypoint" in spec else None,
        environment=env,
        user=r.string(spec["user"], p("user")) if "user" in spec else None,
        working_dir=r.string(spec["working_dir"], p("working_dir")) if "working_dir" in spec else None,
        networks=_service_networks(r, spec.get("networks"), p("networks")),
        ports=tuple(r.items(spec.get("ports"), p("ports"), "ports", lambda v, q: _port(r, v, q))),
        volumes=tuple(r.items(spec.get("volumes"), p("volumes"), "volumes", lambda v, q: _mount(r, v, q))),
        tmpfs=_tmpfs(r, spec.get("tmpfs"), p("tmpfs")),
        labels=_user_labels(r, spec.get("labels"), p("labels")),
        memory=memory,
        cpus=cpus,
        replicas=replicas,
        depends_on=_depends_on(r, spec.get("depends_on"), p("depends_on")),
        ready=_probe(r, spec["ready"], p("ready")) if spec.get("ready") is not None else None,
        stop_grace_period=grace or 0.0,
        stop_signal=r.string(spec["stop_signal"], p("stop_signal")) if "stop_signal" in spec else None,
        privileged=r.boolean(spec["privileged"], p("privileged")) if "privileged" in spec else False,
        cap_add=cap_add,
        hostname=r.string(spec["hostname"], p("hostname")) if "hostname" in spec else None,
        prestart=r.boolean(spec["prestart"], p("prestart")) if "prestart" in spec else True,
    )


def _positive_float(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except ValueError:
        return False


def _build(r: _Reader, value: Any, path: Key) -> Build | None:
    short = isinstance(value, str)
    if short:
        value = {"context": value}
    spec = r.mapping(value, path, "a build context path or {context, dockerfile, args, target}")
    if spec is None:
        return None
    r.keys(spec, path, BUILD_KEYS)
    if "context" not in spec:
        r.error(path, "build needs a 'context' (a folder next to the blueprint)")
        return None
    ctx_path: Key = path if short else (*path, "context")
    context_text = r.string(spec["context"], ctx_path, "a folder path")
    if context_text is None:
        return None
    context = (r.directory / context_text).resolve()
    dockerfile = r.string(spec.get("dockerfile", "Dockerfile"), (*path, "dockerfile")) or "Dockerfile"
    if not context.is_dir():
        r.error(ctx_path, f"build context '{context_text}' is not a folder (looked at {r.shown(context_text)}; "
                          "paths are relative to the blueprint's folder)")
    elif not (context / dockerfile).is_file():
        r.error(ctx_path, f"build context '{context_text}' has no {dockerfile} (looked for "
                          f"{r.shown(os.path.join(context_text, dockerfile))}; add it, or name another file "
                          "with 'dockerfile:')")
    args = r.pairs(spec.get("args"), (*path, "args"), "build args")
    target = r.string(spec["target"], (*path, "target")) if "target" in spec else None
    return Build(context=context, dockerfile=dockerfile, args=args, target=target)


def _service_networks(r: _Reader, value: Any, path: Key) -> tuple[Attachment, ...]:
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


_PORT = re.compile(r"^(?:(?:(?P<ip>[\d.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>\d+)?:)?(?P<ctr>\d+)(?:/(?P<proto>tcp|udp))?$")


def _port(r: _Reader, value: Any, path: Key) -> Port | None:
    if isinstance(value, bool):
        r.error(path, f"expected a port, got {_show(value)}")
        return None
    if isinstance(value, int):
        value = str(value)
    short = isinstance(value, str)
    if short:
        m = _PORT.match(value.strip())
        if not m:
            r.error(path, f"invalid port '{value}': use 8080, \"18080:8080\", \"0.0.0.0::8080\" or 8080/udp")
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
    r.keys(spec, path, ("container", "host", "host_ip", "protocol"))
    if "container" not in spec:
        r.error(path, "port needs 'container'")
        return None
    # Short syntax has no 'container'/'host' keys in the file: report on the item itself.
    at: Callable[[str], Key] = (lambda key: path) if short else (lambda key: (*path, key))
    container = r.integer(spec["container"], at("container"), 1, 65535, "a container port")
    host = r.integer(spec["host"], at("host"), 1, 65535, "a host port") if spec.get("host") else None
    protocol = spec.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        r.error((*path, "protocol"), f"expected tcp or udp, got {_show(protocol)}")
    host_ip = r.string(spec.get("host_ip", "127.0.0.1"), (*path, "host_ip")) or "127.0.0.1"
    if container is None:
        return None
    return Port(container=container, protocol=str(protocol), host_ip=host_ip, host=host, at=path)


def _mount(r: _Reader, value: Any, path: Key) -> Mount | None:
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            r.error(path, f"invalid volume '{value}': use 'name:/path', './file:/path' or add ':ro'")
            return None
        source = parts[0]
        is_bind = source.startswith((".", "/", "~"))
        value = {"type": "bind" if is_bind else "volume", "source": source, "target": parts[1],
                 "read_only": len(parts) == 3 and parts[2] == "ro"}
    spec = r.mapping(value, path, "a volume mount")
    if spec is None:
        return None
    r.keys(spec, path, ("type", "source", "target", "read_only"))
    kind = spec.get("type", "volume")
    if kind not in ("volume", "bind"):
        r.error((*path, "type"), f"expected volume or bind, got {_show(kind)}")
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
    if kind == "bind":
        host_path = (r.directory / Path(source).expanduser()).resolve()
        if not host_path.exists():
            r.error(path, f"bind mount source '{source}' does not exist (looked at {r.shown(source)})")
            return None
        source = str(host_path)
    return Mount(type=kind, source=source, target=target, read_only=read_only, at=path)


def _tmpfs(r: _Reader, value: Any, path: Key) -> tuple[tuple[str, str], ...]:
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
        r.error(path, f"expected tmpfs paths (a list), got {_kind(value)}")
    for target in out:
        if not target.startswith("/"):
            r.error(path, f"tmpfs path '{target}' must be absolute")
    return tuple(sorted(out.items()))


def _depends_on(r: _Reader, value: Any, path: Key) -> tuple[Dependency, ...]:
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
            r.error((*q, "condition"), f"unknown condition {_show(cond)}; use started, ready or completed")
            continue
        out.append(Dependency(dep, cast(Condition, cond), q))
    return tuple(out)


def _probe(r: _Reader, value: Any, path: Key) -> Probe | None:
    if value == "healthcheck":
        return Probe(kind="healthcheck")
    spec = r.mapping(value, path, "a readiness probe ({tcp: PORT}, {http: ...}, {exec: [...]}, {log: REGEX})")
    if spec is None:
        return None
    r.keys(spec, path, (*PROBE_KINDS, "timeout"))
    kinds = [k for k in PROBE_KINDS if k in spec]
    if len(kinds) != 1:
        r.error(path, "a probe needs exactly one of: " + ", ".join(PROBE_KINDS))
        return None
    kind = kinds[0]
    timeout = DEFAULT_PROBE_TIMEOUT
    if "timeout" in spec:
        given = r.duration(spec["timeout"], (*path, "timeout"))
        if given is not None and given <= 0:
            r.error((*path, "timeout"), "a probe timeout must be longer than 0s")
        timeout = given or DEFAULT_PROBE_TIMEOUT
    q = (*path, kind)
    raw = spec[kind]
    if kind == "tcp":
        port = r.integer(raw, q, 1, 65535, "a container port")
        return Probe(kind="tcp", timeout=timeout, port=port) if port else None
    if kind == "http":
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = {"port": raw}
        opts = r.mapping(raw, q, "{port, path, status, body}")
        if opts is None:
            return None
        r.keys(opts, q, HTTP_KEYS)
        port = r.integer(opts.get("port"), (*q, "port"), 1, 65535, "a container port")
        status = r.integer(opts["status"], (*q, "status"), 100, 599, "an HTTP status") if "status" in opts else None
        body = r.string(opts["body"], (*q, "body"), "a regex") if "body" in opts else None
        if body is not None and not _valid_regex(r, body, (*q, "body")):
            return None
        http_path = r.string(opts.get("path", "/"), (*q, "path")) or "/"
        if not http_path.startswith("/"):
            r.error((*q, "path"), f"HTTP path must start with '/', got {_show(http_path)}")
        elif not http_path.isascii() or any(c.isspace() for c in http_path):
            r.error((*q, "path"), f"HTTP path must be URL-encoded (no spaces or non-ASCII), got {_show(http_path)}")
        return Probe(kind="http", timeout=timeout, port=port, path=http_path, status=status, body=body) if port else None
    if kind == "exec":
        command = r.argv(raw, q)
        if command == ():
            r.error(q, "an exec probe needs a command")
        return Probe(kind="exec", timeout=timeout, command=command) if command else None
    if kind == "log":
        pattern = r.string(raw, q, "a regex")
        if pattern is None or not _valid_regex(r, pattern, q):
            return None
        return Probe(kind="log", timeout=timeout, pattern=pattern)
    if raw is not True:
        r.error(q, "use 'healthcheck: true' to wait for the image's own HEALTHCHECK")
        return None
    return Probe(kind="healthcheck", timeout=timeout)


def _valid_regex(r: _Reader, pattern: str, path: Key) -> bool:
    try:
        re.compile(pattern)
    except re.error as exc:
        r.error(path, f"invalid regex: {exc}")
        return False
    return True
