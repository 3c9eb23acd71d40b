"""A Docker Compose file → an equivalent blueprint (``envkit import``), with notes on what it cannot carry.

``from_compose`` is pure: it maps the plain data of a compose file (env files are read through the
``read`` callable it is given) to the plain data of a blueprint, in the blueprint's short syntax, and
lists what it left out. What maps how:

    image / build        → image / build (both given: build; the image name is noted, envkit tags by content)
    environment, env_file→ environment (env files inlined, ``environment:`` winning; ``KEY`` alone → ``${KEY}``)
    ports                → ports, each on 127.0.0.1 with a host port the engine chooses, so that runs go side
                           by side (``keep_host_ports``: as written); an output ``<SERVICE>_<PORT>`` for each
    volumes, tmpfs       → volumes (named, bind; anonymous ones left to the container), tmpfs
    shm_size             → a tmpfs at /dev/shm of that size (what Docker's shm_size is)
    secrets, configs     → read-only bind mounts of their file: where Compose puts them (/run/secrets/NAME,
                           /NAME, or target:); one from environment: or content: is noted
    networks             → networks (with aliases); ``internal`` and labels of the top-level ones
    depends_on           → depends_on: service_started → started, service_healthy → ready,
                           service_completed_successfully → completed (that dependency becomes a job)
    healthcheck          → ready: an exec probe (CMD-SHELL through /bin/sh -c), or the tcp/http probe that
                           ``envkit export`` wrote it for; the deadline is start_period + interval * retries
    service_healthy on a service without a healthcheck → ready: healthcheck (the image's own)
    profiles             → services in a profile are left out unless ``profiles`` names it (as Compose does)
    deploy               → replicas, memory and cpus limits; mem_limit, cpus, scale likewise
    extends              → the base service merged in, as Compose merges it (``envkit.compose_extends``)
    x-envkit             → taken as blueprint keys (a service's, and ``outputs`` at the top), in blueprint
                           syntax once Compose's ``$$`` is read as ``$``: what ``envkit export`` could not say
                           in Compose's terms comes back this way

Interpolation (``${VAR:-default}``, ``$$``) is the same in both formats. It is carried over unchanged in
the values a blueprint takes as text (environment, command, entrypoint, image, labels, user, working_dir,
hostname), and read with ``variables`` (the environment over the compose file's .env, as Compose reads them)
in every value the importer must understand: a port, a volume, a duration, a path (noted, as the blueprint
gets the value it had then). So ``"${DB_PORT:-5432}:5432"`` is container port 5432, as for Compose.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envkit.blueprint import compose_hints
from envkit.blueprint.interpolate import interpolate
from envkit.blueprint.keys import SERVICE
from envkit.blueprint.model import initdb_mount
from envkit.blueprint.readers import NAME, parse_size
from envkit.blueprint.source import Key, Marks, format_path
from envkit.blueprint.stub_values import stub_form
from envkit.compose_extends import extended, plain
from envkit.compose_forms import (
    BlueprintDumper,
    compose_duration,
    definition,
    depends,
    healthcheck,
    parse_env_file,
    port_forms,
    unescape,
    volume_form,
)
from envkit.errors import BlueprintError, Problem, UsageError
from envkit.export import EXTENSION

__all__ = ["ComposeImport", "from_compose"]


#: Compose service keys with no envkit equivalent, and what to say about them (the default: no equivalent)
HINTS = {
    "restart": "envkit does not restart containers: a service that exits fails `up`",
    "container_name": "envkit names containers per run (envkit-<run>-<service>-<n>), so runs can go side by side",
    "network_mode": "every service is on the run's own networks",
    "links": "services reach each other by name on shared networks",
    "expose": "services reach every port of each other on shared networks",
    "platform": "the engine's own platform is used",
}
#: Compose's own keys (the compose-spec schema), to tell a misspelt key (an error, as in Compose) from one
#: envkit cannot carry over (a note)
COMPOSE_KEYS: dict[str, frozenset[str]] = {
    "top": frozenset({"version", "name", "include", "services", "networks", "volumes", "secrets", "configs",
                      "models"}),
    "service": frozenset({
        "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent",
        "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
        "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on",
        "deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
        "entrypoint", "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
        "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
        "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
        "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
        "platform", "ports", "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
        "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open",
        "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
        "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir"}),
    "healthcheck": frozenset({"disable", "interval", "retries", "start_interval", "start_period", "test",
                              "timeout"}),
    "depends_on": frozenset({"condition", "required", "restart"}),
    "build": frozenset({"additional_contexts", "args", "cache_from", "cache_to", "context", "dockerfile",
                        "dockerfile_inline", "entitlements", "extra_hosts", "isolation", "labels", "network",
                        "no_cache", "platforms", "privileged", "provenance", "pull", "sbom", "secrets", "shm_size",
                        "ssh", "tags", "target", "ulimits"}),
    "deploy": frozenset({"endpoint_mode", "labels", "mode", "placement", "replicas", "resources", "restart_policy",
                         "rollback_config", "update_config"}),
}
#: Compose service keys that need nothing in a blueprint (envkit already behaves so)
_SILENT = {"expose", "pull_policy", "profiles"}
_DIRECT = {"user", "working_dir", "hostname", "stop_signal", "privileged", "cap_add", "labels", "command", "entrypoint",
           "read_only", "cap_drop", "init", "ulimits"}
#: service keys whose text a blueprint interpolates as Compose does: carried with their ``${VAR}``s as written
_CARRIED = {"environment", "command", "entrypoint", "image", "labels", "user", "working_dir", "hostname", EXTENSION}


@dataclass(frozen=True)
class ComposeImport:
    """A blueprint document and the notes on what it could not carry over."""

    document: dict[str, Any]
    notes: tuple[str, ...] = ()

    def text(self, source: str = "") -> str:
        head = [f"# Imported by `envkit import`{f' from {source}' if source else ''}; check it with `envkit validate`."]
        head += [f"# note: {n}" for n in self.notes]
        body = yaml.dump(self.document, Dumper=BlueprintDumper, sort_keys=False, width=200, allow_unicode=True)
        return "\n".join(head) + "\n" + body


@dataclass
class _Context:
    marks: Marks
    directory: Path  # the compose file's folder: its relative paths start there
    base: Path  # the blueprint's folder: its relative paths must start there
    read: Callable[[Path], str]
    keep_host_ports: bool
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # what Compose itself refuses
    names: dict[str, str] = field(default_factory=dict)  # compose service name → blueprint name
    volumes: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    top: dict[str, Any] = field(default_factory=dict)  # the compose file's top-level secrets: and configs:

    def note(self, path: Key, message: str) -> None:
        file, line, column = self.marks.where(path)
        where = f"{file}:{line}:{column} " if line else ""
        self.notes.append(f"{where}{format_path(path)}: {message}")

    def problem(self, path: Key, message: str) -> None:
        self.problems.append(self.marks.problem(path, message))

    def known(self, path: Key, spec: Any, table: str) -> None:
        """Each key of ``spec`` (at ``path``) that Compose does not know is a problem, with a guess."""
        keys = COMPOSE_KEYS[table]
        for key in spec if isinstance(spec, dict) else ():
            if str(key).startswith("x-") or key in keys:
                continue
            close = difflib.get_close_matches(str(key), sorted(keys), n=1)
            self.problem((*path, key), f"unknown Compose key '{key}'" + (f" (did you mean '{close[0]}'?)" if close
                                                                       else ""))

    def path(self, written: str) -> str:
        """A relative path of the compose file, relative to the blueprint's folder instead."""
        if written.startswith(("/", "~")):
            return written
        rel = os.path.relpath(self.directory / written, self.base)
        return rel if rel.startswith(".") else f"./{rel}"


def _name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_") or "x"
    return name if NAME.match(name) else f"x{name}"


def from_compose(data: Any, marks: Marks, directory: Path, *, base: Path | None = None, name: str | None = None,
                 profiles: tuple[str, ...] = (), keep_host_ports: bool = False,
                 read: Callable[[Path], str] | None = None, variables: Mapping[str, str] | None = None) -> ComposeImport:
    """The blueprint for compose ``data`` (read from a file in ``directory``, with its ``marks``), to be
    written in ``base`` (default: the same folder). ``read`` reads env files (default: none can be read).
    ``variables`` are what ``${VAR}`` reads where the importer must understand a value (default: none, so
    only defaults apply); ``COMPOSE_PROJECT_NAME`` among them names the blueprint, as it names the project,
    and ``COMPOSE_PROFILES`` (comma-separated) are the profiles when ``profiles`` names none."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise UsageError(f"{marks.file}: not a compose file (no 'services:' mapping)")

    def unreadable(path: Path) -> str:
        raise OSError(f"cannot read {path}")

    ctx = _Context(marks, directory, base or directory, read or unreadable, keep_host_ports)
    ctx.known((), data, "top")
    found: list[Problem] = []  # of a base's path read early (they are read again below, as the rest)

    def expand(text: str) -> str:
        return str(_dollars(interpolate(text, variables or {}, marks, found)))

    data = plain({**data, "services": extended(data["services"], marks, ctx.read, directory, ctx.problems,
                                               expand=expand)})
    data = _resolved(ctx, data, variables if variables is not None else {})
    ctx.top = {k: data[k] for k in ("secrets", "configs") if isinstance(data.get(k), dict)}
    for key in data:
        if key not in COMPOSE_KEYS["top"]:
            continue
        if key not in ("name", "version", "services", "networks", "volumes", "secrets", "configs", EXTENSION) \
                and not key.startswith("x-"):
            ctx.note((key,), f"top-level '{key}' is not carried over")
    for sname, spec in data["services"].items():  # as Compose, the whole file: services in profiles too
        _check(ctx, ("services", sname), spec, data)
    if not profiles and (variables or {}).get("COMPOSE_PROFILES"):  # as Compose: --profile, else this
        profiles = tuple(p.strip() for p in (variables or {})["COMPOSE_PROFILES"].split(",") if p.strip())
        ctx.notes.append(f"COMPOSE_PROFILES={','.join(profiles)} (the environment or the .env beside the compose "
                         "file): its profiles are imported, as Compose reads it")
    chosen = {}
    for sname, spec in data["services"].items():
        wanted = (spec or {}).get("profiles") if isinstance(spec, dict) else None
        if wanted and not set(wanted) & set(profiles) and "*" not in profiles:  # "*": every profile
            ctx.note(("services", sname, "profiles"), f"left out: in profiles {', '.join(map(str, wanted))} "
                     f"(include it with --profile {wanted[0]}; bring up a subset with `envkit up --only`)")
            continue
        chosen[sname] = spec if isinstance(spec, dict) else {}
    if not chosen:
        raise UsageError(f"{marks.file}: every service is in a profile; name one with --profile")
    for sname in chosen:
        ctx.names[sname] = _name(str(sname))
    jobs = {d for spec in chosen.values() for d, c in depends(spec.get("depends_on")).items() if c == "completed"}
    healthy = {d for spec in chosen.values() for d, c in depends(spec.get("depends_on")).items() if c == "ready"}
    for key, what in (("volumes", "volume"), ("networks", "network")):
        for vname, vspec in (data.get(key) or {}).items():
            for extra in sorted(set(vspec or {}) - {"internal", "labels", "driver"}):
                if not str(extra).startswith("x-"):
                    ctx.note((key, vname, extra), f"not carried over: each run gets a private {what}")
            if (vspec or {}).get("driver") not in (None, "local", "bridge"):
                ctx.note((key, vname, "driver"), f"the engine's default {what} driver is used")
    services = {ctx.names[s]: _service(ctx, s, spec, s in jobs, s in healthy) for s, spec in chosen.items()}
    project = name or (variables or {}).get("COMPOSE_PROJECT_NAME") or data.get("name") or directory.name
    document: dict[str, Any] = {"name": _project(project)}
    networks = {_name(n): definition(spec, ("internal", "labels")) for n, spec in (data.get("networks") or {}).items()
                if any(_name(n) in _attached(s) for s in services.values())}
    if networks:
        document["networks"] = networks
    volumes = {_name(v): definition(spec, ("labels",)) for v, spec in (data.get("volumes") or {}).items()
               if any(_mounts(s, _name(v)) for s in services.values())}
    volumes.update({v: None for v in ctx.volumes if v not in volumes})
    if volumes:
        document["volumes"] = volumes
    document["services"] = services
    top = unescape(data.get(EXTENSION))
    if isinstance(top, dict) and "outputs" in top:
        if top["outputs"]:
            document["outputs"] = top["outputs"]
    else:
        outputs = {f"{n.upper().replace('-', '_')}_{p}": f"${{services.{n}.host}}:${{services.{n}.ports.{p}}}"
                   for n, s in services.items() for p in (str(x).rsplit(":", 1)[-1] for x in s.get("ports", ()))
                   if p.isdigit()}
        if outputs:
            document["outputs"] = outputs
    if ctx.problems:
        raise BlueprintError(ctx.problems, what="compose file")
    return ComposeImport(document, tuple(ctx.notes))


def _resolved(ctx: _Context, data: dict[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    """``data`` as the importer reads it: ``${VAR}`` substituted (and a literal ``$`` written ``$$`` again,
    as a blueprint reads it) everywhere but in the service keys of ``_CARRIED`` and in extension keys.
    A service key that changed is noted; a variable that must be set and is not is noted where it is."""
    problems: list[Problem] = []

    def read(value: Any, path: Key) -> Any:  # interpolated at its place in the file, so that problems say where
        for name in sorted(_unset(value, variables)):
            ctx.note(path, f"{name} is not set: read as empty, as Compose reads it")
        for key in reversed(path):
            value = {key: value}
        found = interpolate(value, variables, ctx.marks, problems)
        for key in path:
            found = found[key]
        return _dollars(found)

    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "services" and isinstance(value, dict):
            out[key] = {}
            for sname, spec in value.items():
                if not isinstance(spec, dict):
                    out[key][sname] = spec
                    continue
                resolved = {}
                for skey, svalue in spec.items():
                    path = ("services", sname, skey)
                    keep = skey in _CARRIED or str(skey).startswith("x-")
                    svalue = svalue if skey == EXTENSION else _braced(svalue)
                    resolved[skey] = svalue if keep else read(svalue, path)
                    if resolved[skey] != svalue:
                        ctx.note(path, "${...} read with the variables of this environment and the .env beside the "
                                 "compose file, as Compose does: the blueprint gets the values they have now")
                out[key][sname] = resolved
        elif key == EXTENSION or str(key).startswith("x-"):
            out[key] = value
        else:
            out[key] = read(_braced(value), (key,))
    for problem in problems:
        where = f"{problem.file}:{problem.line}:{problem.column} " if problem.line else ""
        ctx.notes.append(f"{where}{problem.path}: {problem.message}: read as empty")
    return out


_BARE = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")
_PLAIN_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _braced(value: Any) -> Any:
    """Compose's ``$NAME`` written ``${NAME}``, the one form a blueprint reads (``$$`` stays a literal ``$``)."""
    if isinstance(value, str):
        return _BARE.sub(lambda m: "${" + m.group(1) + "}" if m.group(1) else "$$", value)
    if isinstance(value, dict):
        return {k: _braced(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_braced(v) for v in value]
    return value


def _unset(value: Any, variables: Mapping[str, str]) -> set[str]:
    """The variables ``value`` reads as plain ``${NAME}`` (no default) that are not set."""
    if isinstance(value, str):
        return {n for n in _PLAIN_REF.findall(value.replace("$$", "")) if n not in variables}
    if isinstance(value, dict):
        return set().union(*(_unset(v, variables) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_unset(v, variables) for v in value))
    return set()


def _dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dollars(v) for v in value]
    return value


def _check(ctx: _Context, path: Key, spec: Any, data: dict[str, Any]) -> None:
    """What Compose itself refuses in a service: a key it does not know, a dependency on a service, or a
    mount of a volume, that the file does not define."""
    if not isinstance(spec, dict):
        return
    ctx.known(path, spec, "service")
    for key in ("healthcheck", "build", "deploy"):
        ctx.known((*path, key), spec.get(key), key)
    defined = [str(s) for s in data["services"]]
    value = spec.get("depends_on")
    for i, dep in enumerate(depends(value)):
        where: Key = (*path, "depends_on", dep) if isinstance(value, dict) else (*path, "depends_on", i)
        if isinstance(value, dict):
            ctx.known(where, value[dep], "depends_on")
        if dep not in defined:
            close = difflib.get_close_matches(dep, defined, n=1)
            ctx.problem(where, f"unknown service '{dep}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    for key in ("secrets", "configs"):
        found = data.get(key)
        top: dict[str, Any] = found if isinstance(found, dict) else {}
        for i, entry in enumerate(spec.get(key) or []):
            source = str(entry.get("source")) if isinstance(entry, dict) else str(entry)
            if source not in top:
                ctx.problem((*path, key, i), f"undefined {key[:-1]} '{source}' (declare it under the top-level {key}:)")
    volumes = [str(v) for v in data.get("volumes") or {}]
    for i, entry in enumerate(spec.get("volumes") or []):
        mount, _ = volume_form(entry)
        if mount is not None and mount["type"] == "volume" and mount["source"] and mount["source"] not in volumes:
            ctx.problem((*path, "volumes", i), f"undefined volume '{mount['source']}' (declare it under the "
                        "top-level volumes:)")


def _project(raw: str) -> str:
    return _name(str(raw))[:40].rstrip("-_") or "imported"


def _attached(svc: dict[str, Any]) -> list[str]:
    nets = svc.get("networks", ["default"])
    return list(nets)


def _mounts(svc: dict[str, Any], volume: str) -> bool:
    return any(isinstance(m, str) and m.split(":")[0] == volume for m in svc.get("volumes", ()))


def _service(ctx: _Context, name: str, spec: dict[str, Any], job: bool, healthy: bool) -> dict[str, Any]:
    path: Key = ("services", name)
    out: dict[str, Any] = {}
    found = spec.get(EXTENSION)
    extension: dict[str, Any] = unescape(found) if isinstance(found, dict) else {}
    handled = {"image", "build", "environment", "env_file", "ports", "volumes", "tmpfs", "shm_size", "networks",
               "depends_on",
               "healthcheck", "secrets", "configs", "deploy", "mem_limit", "cpus", "scale", "stop_grace_period",
               *_SILENT, *_DIRECT}
    for key in spec:
        if key == "restart" and str(spec[key]) == "no":  # Compose's default
            continue
        if key not in handled and key in COMPOSE_KEYS["service"]:
            ctx.note((*path, key), f"not carried over: {_hint(key)}")
    if spec.get("build") is not None and "build" not in extension:
        out["build"] = _build(ctx, (*path, "build"), spec["build"])
        if spec.get("image"):
            ctx.note((*path, "image"), "not used: envkit builds the image and tags it by the content of its context")
    elif spec.get("image") is not None and "build" not in extension:
        out["image"] = str(spec["image"])
    for key in _DIRECT:
        value = spec.get(key)
        if value in (None, [], {}) and not (key == "entrypoint" and value == []):  # entrypoint: [] clears the image's
            continue
        if key in ("user", "working_dir", "hostname"):
            value = str(value)
        elif key in ("command", "entrypoint") and isinstance(value, str):
            value = value.strip()  # a block scalar's last line break means nothing to a command
        out[key] = value
    if job:
        out["kind"] = "job"
    environment = _environment(ctx, path, spec)
    if environment:
        out["environment"] = environment
    _ports(ctx, path, spec.get("ports"), out)
    _volumes(ctx, path, spec, out)
    for key in ("secrets", "configs"):
        _files(ctx, path, key, spec.get(key), out)
    _networks(ctx, name, path, spec.get("networks"), out)
    _dependencies(ctx, path, spec.get("depends_on"), out)
    _resources(ctx, path, spec, out)
    if "stop_grace_period" in spec:
        grace = compose_duration(spec["stop_grace_period"])
        if grace is None:
            ctx.note((*path, "stop_grace_period"), f"cannot read duration {spec['stop_grace_period']!r}")
        else:
            out["stop_grace_period"] = f"{grace:g}s"
    if not job and "healthcheck" in spec:
        check = healthcheck(spec["healthcheck"])
        for n in check.notes:
            ctx.note((*path, "healthcheck"), n)
        if check.ready is not None:
            out["ready"] = check.ready
    elif job and "healthcheck" in spec:
        ctx.note((*path, "healthcheck"), "not used: a job is waited for until it exits 0")
    if healthy and "ready" not in out and not job:
        out["ready"] = "healthcheck"  # dependants wait for service_healthy: the image's own HEALTHCHECK
    for key, value in extension.items():  # what `envkit export` could not say in Compose's terms
        if key == "depends_on" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    if out.get("kind") == "stub":  # envkit's own stub: its image, configuration and probe come from `stub:`
        out = stub_form(out)
    # A blueprint refuses what Compose grants without asking (docs/security.md): say so, loudly, rather than
    # write a file that does not load.
    for grant, why in _grants(ctx, out):
        if grant not in (out.get("allow") or []):
            out["allow"] = [*(out.get("allow") or []), grant]
            ctx.note(path, f"{why}: 'allow: [{grant}]' added; review it")
    order = {k: i for i, k in enumerate(SERVICE.names)}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def _hint(key: str) -> str:
    """What to say of a Compose service key not carried over: the importer's word, else the blueprint's own
    for that Compose key (``compose_hints``: ``shm_size`` is a tmpfs at /dev/shm), else that there is none."""
    found = HINTS.get(key) or compose_hints.hint("service", key) or ""
    return found.removeprefix("not supported: ") if found not in ("", "not supported") else "envkit has no equivalent"


def _grants(ctx: _Context, out: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``allow:`` entries a service needs for what it asks (as Compose grants it), each with why."""
    found = []
    if _outside(ctx, out):
        found.append(("host-paths", "uses files outside the blueprint's folder"))
    if out.get("privileged"):
        found.append(("privileged", "runs privileged"))
    if out.get("cap_add"):
        found.append(("capabilities", "adds capabilities"))
    if any(isinstance(p, str) and not p.startswith(("127.0.0.1:", "[::1]:")) and p.count(":") >= 2
           for p in out.get("ports") or ()):
        found.append(("public-ports", "publishes a port on every address (--keep-host-ports)"))
    return sorted(found)


def _outside(ctx: _Context, out: dict[str, Any]) -> bool:
    """Whether the service's build context or a bind mount source lies outside the blueprint's folder."""
    build = out.get("build")
    paths = [build if isinstance(build, str) else (build or {}).get("context")] if build is not None else []
    for mount in out.get("volumes") or []:
        if isinstance(mount, str) and mount.startswith((".", "/", "~")):
            paths.append(mount.split(":", 1)[0])
        elif isinstance(mount, dict) and mount.get("type") == "bind":
            paths.append(mount.get("source"))
    base = ctx.base.resolve()
    return any(isinstance(p, str) and not (base / os.path.expanduser(p)).resolve().is_relative_to(base)
               for p in paths)


def _build(ctx: _Context, path: Key, value: Any) -> Any:
    if isinstance(value, str):
        if re.match(r"^(https?|git)://|^git@|\.git(#|$)", value):
            ctx.note(path, "a remote build context is not supported; clone it and point build: at the folder")
        return ctx.path(value)
    if not isinstance(value, dict):
        ctx.note(path, f"cannot read build {value!r}")
        return None
    out: dict[str, Any] = {"context": ctx.path(str(value.get("context", ".")))}
    if value.get("dockerfile"):
        out["dockerfile"] = str(value["dockerfile"])
    if value.get("args"):
        out["args"] = value["args"]
    if value.get("target"):
        out["target"] = str(value["target"])
    for extra in sorted(set(value) - {"context", "dockerfile", "args", "target"}):
        ctx.note((*path, extra), "not carried over")
    return out["context"] if len(out) == 1 else out


def _environment(ctx: _Context, path: Key, spec: dict[str, Any]) -> dict[str, str]:
    pairs: dict[str, str | None] = {}
    files = spec.get("env_file")
    for i, entry in enumerate([files] if isinstance(files, str | dict) else files or []):
        where = (*path, "env_file") if isinstance(files, str | dict) else (*path, "env_file", i)
        file = entry.get("path") if isinstance(entry, dict) else entry
        required = entry.get("required", True) if isinstance(entry, dict) else True
        try:
            text = ctx.read(ctx.directory / str(file))
        except OSError:
            if required:
                ctx.note(where, f"{file}: cannot be read; its variables are missing (put them under environment:)")
            continue
        found, bad = parse_env_file(text)
        pairs.update(found)
        for line in bad:
            ctx.note(where, f"{file}: cannot read {line}")
    value = spec.get("environment")
    if isinstance(value, list):
        for item in value:
            key, eq, val = str(item).partition("=")
            pairs[key] = val if eq else None
    elif isinstance(value, dict):
        pairs.update({str(k): None if v is None else _text(v) for k, v in value.items()})
    passed = [k for k, v in pairs.items() if v is None]
    if passed:
        ctx.note((*path, "environment"), f"{', '.join(passed)}: taken from the environment as ${{NAME}}, which is "
                 "set but empty when NAME is unset (Compose leaves such a variable out of the container)")
    return {k: f"${{{k}}}" if v is None else v for k, v in pairs.items()}


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _ports(ctx: _Context, path: Key, value: Any, out: dict[str, Any]) -> None:
    found: list[str | int] = []
    first: dict[tuple[int, str], int] = {}  # (container port, protocol) → the entry that publishes it
    for i, entry in enumerate(value or []):
        forms, why = port_forms(entry)
        if why:
            ctx.note((*path, "ports", i), why)
        if any(f.protocol not in ("tcp", "udp") for f in forms):
            ctx.note((*path, "ports", i), f"protocol {forms[0].protocol} is not supported")
            continue
        for form in [f for f in forms if (f.container, f.protocol) in first]:
            # Compose binds a container port to several host ports; a blueprint publishes it once
            ctx.note((*path, "ports", i), f"container port {form.container}/{form.protocol} is published by "
                     f"ports[{first[(form.container, form.protocol)]}] already: envkit publishes it once")
        forms = [f for f in forms if (f.container, f.protocol) not in first]
        if not forms:
            continue
        first.update({(f.container, f.protocol): i for f in forms})
        if any(f.host or f.host_ip not in (None, "127.0.0.1") for f in forms) and not ctx.keep_host_ports:
            shown = f"published {entry.get('published')!r}" if isinstance(entry, dict) else repr(entry)
            ctx.note((*path, "ports", i), f"{shown}: on 127.0.0.1 with a host port the engine chooses, so that runs "
                     "can go side by side (read it from the outputs; --keep-host-ports keeps it as written)")
        found += [f.blueprint(ctx.keep_host_ports) for f in forms]
    if found:
        out["ports"] = found


def _volumes(ctx: _Context, path: Key, spec: dict[str, Any], out: dict[str, Any]) -> None:
    mounts: list[Any] = []
    initdb = False  # noted once per service
    tmpfs = spec.get("tmpfs")
    tmpfs_list: list[str] = [tmpfs] if isinstance(tmpfs, str) else [str(t) for t in tmpfs or []]
    for i, entry in enumerate(spec.get("volumes") or []):
        where = (*path, "volumes", i)
        mount, notes = volume_form(entry)
        for n in notes:
            ctx.note(where, n)
        if mount is None:
            continue
        if mount["type"] == "tmpfs":
            tmpfs_list.append(f"{mount['target']}:{mount['options']}" if mount["options"] else mount["target"])
            continue
        if mount["source"] is None:
            ctx.note(where, f"anonymous volume {mount['target']}: left to the container (declare a named volume "
                     "if several services must share it)")
            continue
        source = ctx.path(mount["source"]) if mount["type"] == "bind" else _name(mount["source"])
        if mount["type"] == "volume":
            ctx.volumes.setdefault(source, None)
        mounts.append(f"{source}:{mount['target']}" + (":ro" if mount["read_only"] else ""))
        if not initdb and initdb_mount(str(mount["target"])):
            initdb = True
            ctx.note(where, "the image runs these scripts once, when its data directory is new: `envkit up "
                     "--snapshot` captures the initialised state the first time and later runs start from it "
                     "(or add `snapshot: true`; docs/snapshots.md)")
    if mounts:
        out["volumes"] = mounts
    shm = spec.get("shm_size")
    if shm is not None:  # Docker's /dev/shm is a tmpfs of that size: a tmpfs there is the same thing, anywhere
        size = parse_size(shm)
        if size is None:
            ctx.note((*path, "shm_size"), f"not carried over: {shm!r} is not a size (e.g. 256m, 1gb, or bytes)")
        elif not any(t.split(":", 1)[0].rstrip("/") == "/dev/shm" for t in tmpfs_list):
            tmpfs_list.append(f"/dev/shm:size={size}")
    if tmpfs_list:
        out["tmpfs"] = tmpfs_list


def _files(ctx: _Context, path: Key, key: str, value: Any, out: dict[str, Any]) -> None:
    """A service's ``secrets:`` or ``configs:`` defined from a file → a read-only bind mount where Compose
    puts it (a secret under /run/secrets/, a config at /<name>, or the ``target``)."""
    defined = ctx.top.get(key) or {}
    for i, entry in enumerate(value or []):
        where: Key = (*path, key, i)
        source = str(entry.get("source")) if isinstance(entry, dict) else str(entry)
        target = str(entry.get("target") or source) if isinstance(entry, dict) else source
        if key == "secrets" and not target.startswith("/"):
            target = f"/run/secrets/{target}"
        elif not target.startswith("/"):
            target = f"/{target}"
        spec = defined.get(source)
        file = spec.get("file") if isinstance(spec, dict) else None
        if file is None:
            how = ", ".join(k for k in (spec or {}) if k in ("environment", "content", "external", "name")) or "?"
            ctx.note(where, f"{key[:-1]} '{source}' ({how}) not carried over: only one from a file: is mounted")
            continue
        for extra in sorted(set(entry) - {"source", "target"}) if isinstance(entry, dict) else ():
            ctx.note((*where, extra), "not carried over: the file is mounted as it is on this machine")
        out.setdefault("volumes", []).append(f"{ctx.path(str(file))}:{target}:ro")


def _networks(ctx: _Context, name: str, path: Key, value: Any, out: dict[str, Any]) -> None:
    renamed = ctx.names[name] != name.lower()  # keep the old DNS name reachable as an alias
    if value is None and not renamed:
        return
    attachments: dict[str, list[str]] = {}
    for net in (value if isinstance(value, list | dict) else ["default"]) or ["default"]:
        opts = value.get(net) if isinstance(value, dict) else None
        aliases = [str(a) for a in (opts or {}).get("aliases", [])] if isinstance(opts, dict) else []
        for extra in sorted(set(opts or {}) - {"aliases"}) if isinstance(opts, dict) else []:
            ctx.note((*path, "networks", net, extra), "not carried over: the engine assigns addresses")
        attachments[_name(str(net))] = aliases + ([name] if renamed else [])
    if any(attachments.values()):
        out["networks"] = {n: ({"aliases": a} if a else None) for n, a in attachments.items()}
    else:
        out["networks"] = list(attachments)


def _dependencies(ctx: _Context, path: Key, value: Any, out: dict[str, Any]) -> None:
    deps: dict[str, str] = {}
    for dep, condition in depends(value).items():
        where = (*path, "depends_on", dep)
        if dep not in ctx.names:
            ctx.note(where, f"dropped: '{dep}' is not imported (a profile, or not defined)")
            continue
        if condition == "?":
            ctx.note(where, "unknown condition; waiting until it is ready")
            condition = "ready"
        opts = value.get(dep) if isinstance(value, dict) else None
        for extra in sorted(set(opts or {}) - {"condition"}) if isinstance(opts, dict) else []:
            ctx.note((*where, extra), "not carried over")
        deps[ctx.names[dep]] = condition
    if deps:
        out["depends_on"] = deps


def _resources(ctx: _Context, path: Key, spec: dict[str, Any], out: dict[str, Any]) -> None:
    given = spec.get("deploy")
    deploy: dict[str, Any] = given if isinstance(given, dict) else {}
    resources: dict[str, Any] = deploy["resources"] if isinstance(deploy.get("resources"), dict) else {}
    limits: dict[str, Any] = resources["limits"] if isinstance(resources.get("limits"), dict) else {}
    replicas = deploy.get("replicas", spec.get("scale"))
    if isinstance(replicas, str) and replicas.strip().isdigit():  # "${REPLICAS:-1}", read: a number, as for Compose
        replicas = int(replicas)
    if replicas not in (None, 1):
        out["replicas"] = replicas
    memory = limits.get("memory", spec.get("mem_limit"))
    if memory is not None:
        out["memory"] = memory if isinstance(memory, int) else str(memory)
    cpus = limits.get("cpus", spec.get("cpus"))
    if cpus is not None:
        out["cpus"] = float(cpus) if isinstance(cpus, int | float) or str(cpus).replace(".", "", 1).isdigit() else cpus
    for key in sorted(set(deploy) - {"replicas", "resources"}):
        ctx.note((*path, "deploy", key), "not carried over")
    for key in sorted(set(limits) - {"memory", "cpus"}):
        ctx.note((*path, "deploy", "resources", "limits", key), "not carried over")
    for key in sorted(set(resources) - {"limits"}):
        ctx.note((*path, "deploy", "resources", key), "not carried over")
