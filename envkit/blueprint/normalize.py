"""Plain data → typed model: short syntax expanded to long syntax, defaults filled, paths resolved.

Which keys exist, how each is read and what its default is comes from the tables in ``keys.py``; this
module walks the file's mappings and hands each one to ``read_keys``. Every value is checked for its
type, and every problem is collected (not just the first) with the key path and position it came from.
Cross-references between services, networks, volumes and outputs are checked afterwards, on the model
(``validate.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from envkit.blueprint import keys as K
from envkit.blueprint import stub_values
from envkit.blueprint import values as v
from envkit.blueprint.model import Attachment, Blueprint, NetworkDef, Service, VolumeDef
from envkit.blueprint.readers import NAME, Reader, Table, parse_duration, parse_size, read_keys, show
from envkit.blueprint.seed_values import kind_error as seed_kind_error
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem, UsageError
from envkit.faults.kinds import parse as parse_fault
from envkit.faults.scenarios import Scenario, scenario
from envkit.secrets import Secret, placeholders

__all__ = ["normalize", "parse_duration", "parse_size"]

D = TypeVar("D", NetworkDef, VolumeDef)


def normalize(data: dict[str, Any], marks: Marks, file: Path, directory: Path,
              variables: Mapping[str, set[str]] | None = None) -> tuple[Blueprint, list[Problem]]:
    """``variables``: what each variable was substituted with (``interpolate``'s ``used``), for ``secrets:``."""
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
            r.error(path, f"invalid service name {show(sname)}: use lowercase letters, digits, '-' and '_'")
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
    outputs, secret_outputs = _outputs(r, data.get("outputs"))
    secrets = [*_secrets(r, data.get("secrets"), variables or {}), *r.secrets]
    _check_secret_outputs(r, outputs, secret_outputs, secrets)
    # A model is returned even when some values were wrong, so that cross-references are checked too
    # and `envkit validate` lists every problem in one go; the caller must not run it when problems exist.
    return Blueprint(name=name or "invalid", file=file, directory=directory, services=services, networks=networks,
                     volumes=volumes, outputs=outputs, secrets=tuple(secrets),
                     secret_outputs=secret_outputs, faults=_faults(r, data.get("faults"), services)), r.problems


def _blueprint_name(r: Reader, value: Any, file: Path) -> str | None:
    if value is None:
        # A folder blueprint is named after its folder, a file after its stem.
        value = file.parent.name if file.stem in ("blueprint",) else file.stem
        value = re.sub(r"[^a-z0-9_-]", "-", value.lower()).strip("-_") or "env"
    name = r.string(value, ("name",))
    if name is not None and not (NAME.match(name) and len(name) <= 40):
        r.error(("name",), f"invalid name {show(name)}: use up to 40 lowercase letters, digits, '-' and '_'")
        return None
    return name


def _definitions(r: Reader, value: Any, key: str, what: str, table: Table, make: Callable[..., D]) -> dict[str, D]:
    """The top-level ``networks:`` or ``volumes:``: name → definition, each read through its table."""
    out: dict[str, D] = {}
    for name, raw in (r.mapping(value, (key,), key) or {}).items():
        path: Key = (key, name)
        if not NAME.match(name):
            r.error(path, f"invalid {what} name {show(name)}")
            continue
        spec = r.mapping(raw, path, f"a {what} definition")
        if spec is None:
            continue
        r.keys(spec, path, table)
        out[name] = make(name, **read_keys(r, table, spec, path))
    return out


def _faults(r: Reader, value: Any, services: Mapping[str, Any]) -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}
    for name, body in (r.mapping(value, ("faults",), "faults") or {}).items():
        try:
            found = scenario(str(name), body)
        except UsageError as exc:
            r.error(("faults", name), str(exc).removeprefix(f"faults.{name}: ").removeprefix(f"faults.{name}"))
            continue
        if found.service not in services or (found.params.get("peer") and found.params["peer"] not in services):
            missing = found.service if found.service not in services else found.params["peer"]
            r.error(("faults", name, "service" if missing == found.service else "peer"), f"no service {missing!r}")
            continue
        spec = parse_fault(found.kind, found.params)  # scenario() checked it
        tcp = [p for p in services[found.service].ports if p.protocol == "tcp"]
        if spec.family == "connection" and spec.via != "netem" and not spec.ports and not tcp:
            r.error(("faults", name), f"service {found.service!r} publishes no TCP port, so a {found.kind} fault "
                                      f"has none to take by default: name it (port: 6379; several: port: 80,443)")
            continue
        out[str(name)] = found
    return out


def _outputs(r: Reader, value: Any) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    """(name, template) of each output, and the names of those marked ``secret: true``."""
    out = []
    secret_names = set()
    for key, raw in (r.mapping(value, ("outputs",), "outputs") or {}).items():
        path: Key = ("outputs", key)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key):
            r.error(path, f"output name {show(key)} must be usable as an environment variable ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        raw, secret = v.secret_form(r, raw, path)
        if raw is None:
            continue
        text = r.string(raw, path, "a string template")
        if text is not None:
            out.append((key, text))
            if secret:
                secret_names.add(key)
    return tuple(out), frozenset(secret_names)


def _secrets(r: Reader, value: Any, variables: Mapping[str, set[str]]) -> list[Secret]:
    """The values of the variables listed under ``secrets:``, as they were substituted."""
    names = r.items(value, ("secrets",), "variable names", lambda x, q: r.string(x, q, "a variable name"))
    out: list[Secret] = []
    for i, name in enumerate(names):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", name):
            r.error(("secrets", i), f"invalid variable name {show(name)}")
            continue
        out.extend(Secret(name, text) for text in sorted(variables.get(name, ())))
    return out


def _check_secret_outputs(r: Reader, outputs: tuple[tuple[str, str], ...], marked: frozenset[str],
                          secrets: list[Secret]) -> None:
    # A secret output's label holds its template with each secret value as a placeholder; a template with
    # none would put the whole "secret" into the run's labels.
    for key, template in outputs:
        if key in marked and placeholders(template, secrets) == template:
            r.error(("outputs", key), f"output {key} is marked secret but holds no secret value: take the secret "
                                      "part from a variable listed under 'secrets:' (or a 'secret: true' environment "
                                      "entry), so that it stays out of the run's labels")


def _service(r: Reader, name: str, raw: Any, path: Key) -> Service | None:
    spec = r.mapping(raw, path, "a service definition")
    if spec is None:
        return None
    r.keys(spec, path, K.SERVICE)
    if spec.get("kind") == "stub":
        return stub_values.expand(r, Service(name=name, **read_keys(r, K.SERVICE, spec, path)), spec, path)
    if "stub" in spec:
        r.error((*path, "stub"), "'stub:' needs 'kind: stub'")
    if "image" not in spec and "build" not in spec:
        r.error(path, "a service needs 'image' or 'build'")
    elif "image" in spec and "build" in spec:
        r.error((*path, "image"), "use either 'image' or 'build', not both")
    svc = Service(name=name, **read_keys(r, K.SERVICE, spec, path))
    seed_kind_error(r, svc.kind, svc.seed)
    return svc
