"""Compose's ``extends``: a service built on another one's settings (of the same file, or of another file
with ``file:``), merged as ``docker compose config`` merges them, so that ``envkit import`` reads the result.

The merge, key by key (the service's own value against its base's):

    command, entrypoint                  the service's own replaces the base's
    environment, labels, annotations,    merged as mappings (a list of KEY=VALUE read as one); the service's
    sysctls                              own keys win
    volumes                              merged by target: the service's own mount of a target replaces
                                         the base's, in its place; new targets follow
    networks, depends_on                 merged (a list is the same mapping without options)
    ports, expose, dns, tmpfs, env_file, the base's, then what the service adds that is not there yet (a
    profiles, …                          single string, as Compose allows in some, is a list of one)
    build                                merged key by key, a string being its context (``build: .`` and an
                                         override's ``build: {target: dev}`` build . for target dev)
    other mappings (healthcheck, build,  merged key by key, the service's own winning; a list inside is
    deploy, ulimits, networks, …)        appended (a network's aliases), but a healthcheck's test replaced and
                                         a build's args merged by key
    anything else                        the service's own

Compose's tags steer the merge: ``!reset`` drops the inherited value (whatever is written after it),
``!override`` replaces it whole instead of merging. ``plain`` takes the tags out once the merge is done.

Relative paths of a base read from a file in another folder (its build context, bind mounts, env files)
are made relative to the extending file's folder, as Compose resolves them against the base's file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from envkit.blueprint.source import COMPOSE_TAGS, Marks, Tagged
from envkit.compose_forms import volume_form
from envkit.errors import Problem

__all__ = ["extended", "overridden", "plain"]

_REPLACED = {"command", "entrypoint"}
_PAIRS = {"environment", "labels", "annotations", "sysctls"}
_APPENDED = {"ports", "expose", "dns", "dns_search", "dns_opt", "tmpfs", "cap_add", "cap_drop", "env_file", "secrets",
             "configs", "extra_hosts", "devices", "security_opt", "group_add", "links", "external_links",
             "volumes_from", "device_cgroup_rules", "profiles", "label_file"}
#: lists of KEY=VALUE inside a merged mapping (a build's args), merged by key as Compose does
_INNER_PAIRS = {"args", "labels", "additional_contexts", "annotations"}
#: a ``${...}`` in a volume entry (whose default may hold a colon: ``${DATA:-./data}:/data``)
_VARIABLE = re.compile(r"\$\{[^{}]*(?:\$\{[^{}]*\}[^{}]*)*\}")


def extended(services: dict[str, Any], marks: Marks, read: Callable[[Path], str], directory: Path,
             problems: list[Problem], *, only: str | None = None,
             chain: tuple[tuple[Path, str], ...] = (), expand: Callable[[str], str] = str) -> dict[str, Any]:
    """``services`` (or the ``only`` one) with every ``extends`` merged in; what Compose refuses (a base
    that is not there, a cycle, a file that cannot be read) is added to ``problems`` and that service is kept
    without its base. ``chain``: the bases of other files being read, to tell a cycle through files.
    ``expand``: a path with ``${VAR}`` as Compose reads it, before a base's path is made the extending file's."""
    cycles = _cycles(services)
    done: dict[str, Any] = {}

    def resolve(name: str) -> Any:
        if name in done:
            return done[name]
        spec = services[name]
        if not isinstance(spec, dict) or "extends" not in spec:
            done[name] = spec
            return spec
        where = ("services", name, "extends")
        ref = spec["extends"]
        local = {k: v for k, v in spec.items() if k != "extends"}
        done[name] = local  # until merged: what a broken base leaves
        base_name = str(ref) if isinstance(ref, str) else str(ref.get("service")) if isinstance(ref, dict) else ""
        file = ref.get("file") if isinstance(ref, dict) else None
        if name in cycles:
            problems.append(marks.problem(where, f"extends forms a cycle: {' -> '.join(cycles[name])}"))
            return local
        if file is not None:
            base = _from_file(str(file), base_name, read, directory, problems, marks, where, chain, expand)
        elif base_name in services:
            base = resolve(base_name)
        else:
            close = difflib.get_close_matches(base_name, [str(s) for s in services], n=1)
            problems.append(marks.problem(where, f"service '{base_name}' is not defined"
                                          + (f" (did you mean '{close[0]}'?)" if close else "")))
            base = None
        done[name] = merge(base, local) if isinstance(base, dict) else local
        return done[name]

    return {name: resolve(name) for name in (services if only is None else [only])}


def overridden(data: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A compose file's data with an override file's merged over it (``compose.override.yaml``, or
    ``docker compose -f a -f b``): each service as ``extends`` merges it, the other mappings key by key."""
    out = dict(data)
    for key, value in override.items():
        old = out.get(key)
        if key == "services" and isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **{name: merge(old[name], spec) if isinstance(old.get(name), dict)
                                  and isinstance(spec, dict) else spec for name, spec in value.items()}}
        elif isinstance(old, dict) and isinstance(value, dict):
            out[key] = _deep(old, value)
        else:
            out[key] = value
    return out


def merge(base: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    """A service's own settings over its base's, as Compose merges them (see the module docstring)."""
    out = dict(base)
    for key, value in local.items():
        old = out.get(key)
        if isinstance(value, Tagged):
            if value.tag == "!reset":
                out.pop(key, None)
            else:
                out[key] = value.value
        elif key not in out or old is None or key in _REPLACED:
            out[key] = value
        elif key in _PAIRS:
            out[key] = {**_pairs(old), **_pairs(value)}
        elif key == "volumes" and isinstance(old, list) and isinstance(value, list):
            out[key] = _by_target(old, value)
        elif key in ("networks", "depends_on"):
            out[key] = _attachments(old, value, key)
        elif key in _APPENDED and isinstance(old, list | str) and isinstance(value, list | str):
            old, value = _listed(old), _listed(value)
            out[key] = old + [v for v in value if v not in old]
        elif key == "build" and isinstance(old, dict | str) and isinstance(value, dict | str):
            out[key] = _deep(_built(old), _built(value))
        elif isinstance(old, dict) and isinstance(value, dict):
            out[key] = _deep(old, value)
        else:
            out[key] = value
    return out


def _cycles(services: dict[str, Any]) -> dict[str, list[str]]:
    """Each service whose chain of same-file bases comes back to it, with that chain."""
    found: dict[str, list[str]] = {}
    for start in services:
        chain, name = [start], start
        while True:
            spec = services.get(name)
            ref = spec.get("extends") if isinstance(spec, dict) else None
            if ref is None or (isinstance(ref, dict) and ref.get("file") is not None):
                break
            name = str(ref) if isinstance(ref, str) else str(ref.get("service")) if isinstance(ref, dict) else ""
            if name == start:
                found[start] = [*chain, start]
                break
            if name in chain or name not in services:
                break
            chain.append(name)
    return found


def _from_file(file: str, service: str, read: Callable[[Path], str], directory: Path, problems: list[Problem],
               marks: Marks, where: tuple[str, ...], chain: tuple[tuple[Path, str], ...],
               expand: Callable[[str], str]) -> dict[str, Any] | None:
    path = directory / file
    here = (Path(os.path.abspath(path)), service)
    if here in chain:  # a base in another file that comes back here (Compose: "Circular reference")
        hops = [*chain[chain.index(here):], here]
        problems.append(marks.problem(where, "extends forms a cycle: "
                                      + " -> ".join(f"{p.name}:{s}" for p, s in hops)))
        return None
    try:
        text = read(path)
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader, with two tags more
        found_marks = Marks(str(path), _positions(yaml.compose(text, Loader=_Loader), (), {}))
    except OSError:
        problems.append(marks.problem(where, f"cannot read {file}"))
        return None
    except yaml.YAMLError as exc:  # where in the base's file, as Compose says it
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}: " if mark is not None else f"{path}: "
        problems.append(marks.problem(where, f"cannot read {file}: {at}{getattr(exc, 'problem', None) or exc}"))
        return None
    pool = data.get("services") if isinstance(data, dict) else None
    if not isinstance(pool, dict) or not isinstance(pool.get(service), dict):
        problems.append(marks.problem(where, f"service '{service}' is not defined in {file}"))
        return None
    found = extended(pool, found_marks, read, path.parent, problems, only=service,
                     chain=(*chain, here), expand=expand)[service]
    rel = os.path.relpath(path.parent, directory)
    return _rebased(found, rel, expand) if rel != "." else dict(found)


def _positions(node: yaml.Node | None, path: tuple[str | int, ...],
               out: dict[tuple[str | int, ...], tuple[int, int]]) -> dict[tuple[str | int, ...], tuple[int, int]]:
    """Where each key path of a base's file starts, so that what is wrong there names its line."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, str(key.value))
            out[here] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _positions(value, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[(*path, i)] = (value.start_mark.line + 1, value.start_mark.column + 1)
            _positions(value, (*path, i), out)
    return out


def _rebased(spec: dict[str, Any], rel: str, expand: Callable[[str], str] = str) -> dict[str, Any]:
    """The relative paths of a base read from another folder, made relative to the extending file's (a
    ``${VAR}`` in one read first, as Compose interpolates before it resolves: ``${SRC:-./app}``)."""
    def move(p: Any) -> Any:
        p = expand(p) if isinstance(p, str) and "$" in p else p
        return p if not isinstance(p, str) or p.startswith(("/", "~")) else f"./{os.path.normpath(os.path.join(rel, p))}"

    out = dict(spec)
    build = out.get("build")
    if isinstance(build, str):
        out["build"] = move(build)
    elif isinstance(build, dict):
        out["build"] = {**build, "context": move(build.get("context", "."))}
    if isinstance(out.get("env_file"), str):
        out["env_file"] = move(out["env_file"])
    elif isinstance(out.get("env_file"), list):
        out["env_file"] = [{**e, "path": move(e.get("path"))} if isinstance(e, dict) else move(e)
                           for e in out["env_file"]]
    volumes = []
    for entry in out.get("volumes") or []:
        entry = expand(entry) if isinstance(entry, str) and "$" in entry else entry
        mount, _ = volume_form(entry.replace("$$", "$") if isinstance(entry, str) else entry)
        if mount is not None and mount["type"] == "bind" and isinstance(entry, str):
            source, _, rest = entry.partition(":")
            entry = f"{move(source)}:{rest}"
        elif mount is not None and mount["type"] == "bind" and isinstance(entry, dict):
            entry = {**entry, "source": move(entry.get("source"))}
        volumes.append(entry)
    if volumes:
        out["volumes"] = volumes
    return out


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _built(value: Any) -> dict[str, Any]:
    return {"context": value} if isinstance(value, str) else dict(value)


def _pairs(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        key, eq, val = str(item).partition("=")
        out[key] = val if eq else None
    return out


def _by_target(base: list[Any], local: list[Any]) -> list[Any]:
    def target(entry: Any) -> Any:
        # read before Compose's interpolation: a variable's ':-' is not a separator of the entry
        mount, _ = volume_form(_VARIABLE.sub(lambda m: m.group(0).replace(":", "\0"), entry)
                               if isinstance(entry, str) else entry)
        return mount["target"] if mount is not None else entry

    mine = {target(e): e for e in local}
    out = [mine.get(target(e), e) for e in base]
    return out + [e for e in local if e not in out]


def _attachments(old: Any, new: Any, key: str) -> Any:
    if isinstance(old, list) and isinstance(new, list):
        return old + [v for v in new if v not in old]
    empty: Any = {"condition": "service_started"} if key == "depends_on" else None

    def mapping(value: Any) -> dict[str, Any]:
        return dict(value) if isinstance(value, dict) else {str(v): empty for v in value or []}

    return _deep(mapping(old), mapping(new))


def _deep(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, Tagged) and value.tag == "!reset":
            out.pop(key, None)
        elif isinstance(value, Tagged):
            out[key] = value.value
        elif isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _deep(out[key], value)
        elif key in _INNER_PAIRS and isinstance(out.get(key), dict | list) and isinstance(value, dict | list):
            out[key] = {**_pairs(out[key]), **_pairs(value)}
        elif key != "test" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + [v for v in value if v not in out[key]]  # a network's aliases, cache_from
        else:
            out[key] = value  # a healthcheck's test is replaced
    return out


def plain(value: Any) -> Any:
    """``value`` without Compose's tags: what nothing was merged into is its value (``!override``) or is
    left out (``!reset``)."""
    if isinstance(value, Tagged):
        return None if value.tag == "!reset" else plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not (isinstance(v, Tagged) and v.tag == "!reset")}
    if isinstance(value, list):
        return [plain(v) for v in value if not (isinstance(v, Tagged) and v.tag == "!reset")]
    return value


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads Compose's tags, for a base in another file."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Tagged:
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return Tagged(str(node.tag), value)


for _tag in COMPOSE_TAGS:
    _Loader.add_constructor(_tag, _tagged)
