"""Plain data → typed model: short syntax expanded to long syntax, defaults filled, paths resolved.

Which keys exist, how each is read and what its default is comes from the tables in ``keys.py``; this
module walks the file's mappings and hands each one to ``read_keys``. Every value is checked for its
type, and every problem is collected (not just the first) with the key path and position it came from.
Cross-references between services, networks, volumes and outputs are checked afterwards, on the model
(``validate.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from envkit.blueprint import keys as K
from envkit.blueprint.model import Attachment, Blueprint, NetworkDef, Service, VolumeDef
from envkit.blueprint.readers import NAME, Reader, Table, parse_duration, parse_size, read_keys
from envkit.blueprint.seed_values import kind_error as seed_kind_error
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem

__all__ = ["normalize", "parse_duration", "parse_size"]

D = TypeVar("D", NetworkDef, VolumeDef)


def normalize(data: dict[str, Any], marks: Marks, file: Path, directory: Path) -> tuple[Blueprint, list[Problem]]:
    r = Reader(marks, directory)
    r.keys(data, (), K.TOP)
    name = _blueprint_name(r, data.get("name"), file)
    networks = _definitions(r, data.get("networks"), "networks", "network", K.NETWORK, NetworkDef)
    volumes = _definitions(r, data.get("volumes"), "volumes", "volume", K.VOLUME, VolumeDef)
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


def _blueprint_name(r: Reader, value: Any, file: Path) -> str | None:
    if value is None:
        # A folder blueprint is named after its folder, a file after its stem.
        value = file.parent.name if file.stem in ("blueprint",) else file.stem
        value = re.sub(r"[^a-z0-9_-]", "-", value.lower()).strip("-_") or "env"
    name = r.string(value, ("name",))
    if name is not None and not (NAME.match(name) and len(name) <= 40):
        r.error(("name",), f"invalid name '{name}': use up to 40 lowercase letters, digits, '-' and '_'")
        return None
    return name


def _definitions(r: Reader, value: Any, key: str, what: str, table: Table, make: Callable[..., D]) -> dict[str, D]:
    """The top-level ``networks:`` or ``volumes:``: name → definition, each read through its table."""
    out: dict[str, D] = {}
    for name, raw in (r.mapping(value, (key,), key) or {}).items():
        path: Key = (key, name)
        if not NAME.match(name):
            r.error(path, f"invalid {what} name '{name}'")
            continue
        spec = r.mapping(raw, path, f"a {what} definition")
        if spec is None:
            continue
        r.keys(spec, path, table)
        out[name] = make(name, **read_keys(r, table, spec, path))
    return out


def _outputs(r: Reader, value: Any) -> tuple[tuple[str, str], ...]:
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


def _service(r: Reader, name: str, raw: Any, path: Key) -> Service | None:
    spec = r.mapping(raw, path, "a service definition")
    if spec is None:
        return None
    r.keys(spec, path, K.SERVICE)
    if "image" not in spec and "build" not in spec:
        r.error(path, "a service needs 'image' or 'build'")
    elif "image" in spec and "build" in spec:
        r.error((*path, "image"), "use either 'image' or 'build', not both")
    svc = Service(name=name, **read_keys(r, K.SERVICE, spec, path))
    seed_kind_error(r, svc.kind, svc.seed)
    return svc
