"""Readers of a service's ``stub:`` key (docs/stubs.md) into ``envkit.stubs.model``, and ``expand``, which
turns a ``kind: stub`` service into an ordinary one: the packaged stub image as its build, the routes in
its environment, an HTTP probe on its port. The planner then treats it like any service.

The tables (``STUB``, ``STUB_ROUTE``, ``STUB_MATCH``, ``STUB_RESPONSE``) live in ``keys.py``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import replace
from typing import Any

from envkit.blueprint import seed_values as sv
from envkit.blueprint.model import Build, Probe, Service
from envkit.blueprint.readers import Reader, Table, show
from envkit.blueprint.source import Key
from envkit.stubs.image import CONTEXT
from envkit.stubs.model import CONFIG_VAR, DEFAULT_PORT, StubDef, StubResponse, StubRoute, StubTls
from envkit.stubs.server.stubserver.routes import DEFAULT_SCENARIO, FAULTS, INITIAL_STATE, is_operators

__all__ = ["HEALTH_PATH", "MAX_FILE", "expand", "stub", "stub_form"]

HEALTH_PATH = "/__envkit/health"
#: a body file travels in the container's environment: keep it small
MAX_FILE = 64 * 1024
_DATE_CHECK = re.compile(r"\{\{\s*now:([^}]*)\}\}")


def _delay(r: Reader, value: Any, path: Key) -> tuple[float, float] | None:
    """``200ms`` (fixed) or ``[100ms, 2s]`` / ``{min, max}`` (random within)."""
    if isinstance(value, dict):
        r.keys(value, path, ("min", "max"))
        value = [value.get("min", 0), value.get("max", value.get("min", 0))]
    if isinstance(value, list):
        if len(value) != 2:
            r.error(path, f"expected [low, high], got {len(value)} items")
            return None
        low, high = r.duration(value[0], (*path, 0)), r.duration(value[1], (*path, 1))
        if low is None or high is None:
            return None
        if high < low:
            r.error(path, f"the high end ({show(value[1])}) is below the low end ({show(value[0])})")
            return None
        return low, high
    seconds = r.duration(value, path)
    return None if seconds is None else (seconds, seconds)


def _fault(r: Reader, value: Any, path: Key) -> str | None:
    if value not in FAULTS:
        r.error(path, f"unknown fault {show(value)}; use one of {', '.join(FAULTS)}")
        return None
    return str(value)


def _json(r: Reader, value: Any, path: Key) -> str | None:
    return sv.json_body(r, value, path)


def _check_templates(r: Reader, text: str, path: Key) -> None:
    for fmt in _DATE_CHECK.findall(text):
        if fmt not in ("iso", "epoch", "epoch_ms", "rfc1123") and "%" not in fmt:
            r.error(path, f"date format {show(fmt)} is neither iso, epoch, epoch_ms, rfc1123 nor a strftime "
                          "pattern (%Y-%m-%d …)")


def response(r: Reader, value: Any, path: Key, table: Table) -> StubResponse | None:
    spec = r.mapping(value, path, "a response {status, headers, json | body | file, delay, fault}")
    if spec is None:
        return None
    r.keys(spec, path, table)
    bodies = [k for k in ("json", "body", "file") if k in spec]
    if len(bodies) > 1:
        r.error((*path, bodies[1]), f"use one of json, body or file, not {' and '.join(bodies)}")
        return None
    status = r.integer(spec.get("status", 200), (*path, "status"), 100, 599, "an HTTP status")
    headers = r.pairs(spec.get("headers"), (*path, "headers"), "headers") if spec.get("headers") else ()
    out = StubResponse(status or 200, headers, at=path)
    if "json" in spec:
        out = replace(out, json=_json(r, spec["json"], (*path, "json")))
        _check_templates(r, out.json or "", (*path, "json"))
    elif "body" in spec:
        text = r.string(spec["body"], (*path, "body"), "a text body")
        out = replace(out, text=text)
        _check_templates(r, text or "", (*path, "body"))
    elif "file" in spec:
        found = sv.file(r, spec["file"], (*path, "file"), "body file")
        if found is not None:
            data = found.read_bytes()
            if len(data) > MAX_FILE:
                r.error((*path, "file"), f"body file {show(spec['file'])} is larger than {MAX_FILE // 1024} KiB")
            else:
                out = replace(out, data=data, source=found)
    if "delay" in spec:
        out = replace(out, delay=_delay(r, spec["delay"], (*path, "delay")))
    if "fault" in spec:
        out = replace(out, fault=_fault(r, spec["fault"], (*path, "fault")))
    return out


def _match(r: Reader, value: Any, path: Key, table: Table) -> dict[str, Any]:
    spec = r.mapping(value, path, "a match {query, headers, body}") or {}
    r.keys(spec, path, table)
    out: dict[str, Any] = {}
    for key in ("query", "headers"):
        if spec.get(key) is not None:
            out[key] = r.pairs(spec[key], (*path, key), key)
    if spec.get("body") is not None:
        fields = r.mapping(spec["body"], (*path, "body"), "a mapping: JSON field (dotted) → value")
        for name, want in (fields or {}).items():
            if isinstance(want, dict) and "$regex" in want and is_operators(want):
                try:
                    re.compile(str(want["$regex"]))
                except re.error as exc:
                    r.error((*path, "body", name, "$regex"), f"not a regular expression: {exc}")
        if fields:
            out["body"] = _json(r, fields, (*path, "body"))
    return out


def route(r: Reader, value: Any, path: Key, tables: dict[str, Table]) -> StubRoute | None:
    spec = r.mapping(value, path, "a route {method, path, match, status, json, ...}")
    if spec is None:
        return None
    r.keys(spec, path, tables["stub-route"])
    method = "ANY" if str(spec.get("method", "ANY")).upper() in ("ANY", "*") else \
        sv.method(r, spec["method"], (*path, "method"))
    if "path" not in spec:
        r.error(path, "a route needs a 'path' (like /charges/{id})")
        return None
    url = sv.url_path(r, spec["path"], (*path, "path"))
    if url is not None and url.startswith("/__envkit"):
        r.error((*path, "path"), "paths under /__envkit/ are the stub's control API")
        url = None
    matched = _match(r, spec.get("match"), (*path, "match"), tables["stub-match"])
    single = {k: spec[k] for k in tables["stub-response"].names if k in spec}
    if "responses" in spec and single:
        r.error((*path, next(iter(single))), "use either 'responses' (a list) or one response's keys, not both")
        return None
    if "responses" in spec:
        items = spec["responses"]
        if not isinstance(items, list) or not items:
            r.error((*path, "responses"), "expected a non-empty list of responses")
            return None
        found = [response(r, x, (*path, "responses", i), tables["stub-response"]) for i, x in enumerate(items)]
    else:
        found = [response(r, single, path, tables["stub-response"])]
    if method is None or url is None or any(x is None for x in found):
        return None
    cycle = r.boolean(spec["cycle"], (*path, "cycle")) if "cycle" in spec else False
    name = r.string(spec["name"], (*path, "name"), "a route name") if "name" in spec else None
    scenario, state, set_state = (_name(r, spec[k], (*path, k), what) if k in spec else None for k, what in (
        ("scenario", "a scenario name"), ("state", "a state name"), ("set_state", "a state name")))
    if scenario is not None and state is None and set_state is None:
        r.error((*path, "scenario"), "a scenario without 'state' or 'set_state' does nothing")
    return StubRoute(method, url, tuple(x for x in found if x is not None), matched.get("query", ()),
                     matched.get("headers", ()), matched.get("body"), cycle, name, scenario, state, set_state,
                     at=path)


def _name(r: Reader, value: Any, path: Key, what: str) -> str | None:
    """A scenario or state name: a non-empty word (letters, digits, ``_ - . :``)."""
    text = r.string(value, path, what)
    if text is not None and not re.fullmatch(r"[\w.:-]+", text):
        r.error(path, f"expected {what} (letters, digits, _ - . :), got {show(value)}")
        return None
    return text


def _scenarios(r: Reader, value: Any, path: Key, routes: list[StubRoute]) -> tuple[tuple[str, str], ...]:
    """``scenarios: {cart: empty}``; each route's scenario must be one of them (when any is declared)."""
    spec = r.mapping(value, path, "a mapping: scenario → initial state") or {}
    out = {str(k): _name(r, v, (*path, k), "an initial state") for k, v in spec.items()}
    for k in out:
        _name(r, k, (*path, k), "a scenario name")
    if out:
        for route in routes:
            used = route.scenario or DEFAULT_SCENARIO
            if (route.state or route.set_state) and used not in out:
                close = difflib.get_close_matches(used, list(out), n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"declared: {', '.join(out)}"
                r.error((*route.at, "scenario") if route.scenario else route.at,
                        f"scenario '{used}' is not in stub.scenarios ({hint})")
    return tuple((k, v or INITIAL_STATE) for k, v in out.items())


def stub(r: Reader, value: Any, path: Key, tables: dict[str, Table]) -> StubDef | None:
    spec = r.mapping(value, path, "a stub {port, routes, default}")
    if spec is None:
        return None
    r.keys(spec, path, tables["stub"])
    port = r.integer(spec.get("port", DEFAULT_PORT), (*path, "port"), 1024, 65535, "a stub port") or DEFAULT_PORT
    routes = r.items(spec.get("routes"), (*path, "routes"), "routes",
                     lambda x, q: route(r, x, q, tables))
    default = response(r, spec["default"], (*path, "default"), tables["stub-response"]) \
        if spec.get("default") is not None else None
    scenarios = _scenarios(r, spec["scenarios"], (*path, "scenarios"), routes) if spec.get("scenarios") else ()
    tls = _tls(r, spec["tls"], (*path, "tls"), tables["stub-tls"]) if "tls" in spec else None
    return StubDef(port, tuple(routes), default, scenarios, tls, at=path)


_HOST = re.compile(r"(?=.{1,253}\Z)(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?")


def _tls(r: Reader, value: Any, path: Key, table: Table) -> StubTls | None:
    """``tls: true | false | {names: [...]}``."""
    if isinstance(value, bool):
        return StubTls(at=path) if value else None
    spec = r.mapping(value, path, "true, false or a mapping {names}")
    if spec is None:
        return None
    r.keys(spec, path, table)
    found: list[str] = []
    names = spec.get("names") or []
    if not isinstance(names, list):
        r.error((*path, "names"), f"expected a list of host names, got {show(names)}")
        names = []
    for i, name in enumerate(names):
        text = r.string(name, (*path, "names", i), "a host name or an IP address")
        if text is None:
            continue
        try:
            found.append(str(ipaddress.ip_address(text)))
        except ValueError:
            if not _HOST.fullmatch(text):
                r.error((*path, "names", i), f"expected a host name or an IP address, got {show(name)}")
            else:
                found.append(text.rstrip("."))
    return StubTls(tuple(found), at=path)


def expand(r: Reader, svc: Service, spec: dict[str, Any], path: Key) -> Service:
    """A ``kind: stub`` service as an ordinary service of the stub image (or a problem when it asks for
    what a stub cannot have)."""
    for key in ("image", "build", "command", "entrypoint"):
        if key in spec:
            r.error((*path, key), f"a stub service has no '{key}': envkit runs its own stub server")
    if svc.stub is None:
        if "stub" not in spec:
            r.error(path, "a 'kind: stub' service needs a 'stub:' key with its routes")
        return svc
    if svc.seed:
        r.error((*path, "seed"), "a stub service has no seed steps: declare its routes under 'stub:'")
    config = (CONFIG_VAR, svc.stub.config_text())
    # The HTTP probe speaks no TLS: a TLS stub is ready once it listens (it loads its certificate first).
    ready = svc.ready or (Probe("tcp", port=svc.stub.port) if svc.stub.tls else
                          Probe("http", port=svc.stub.port, path=HEALTH_PATH, status=200))
    environment = tuple(kv for kv in svc.environment if kv[0] != CONFIG_VAR)  # the loader's own variable
    return replace(svc, build=Build(CONTEXT), environment=(*environment, config), ready=ready)


def stub_form(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``kind: stub`` service read back from a Compose file (``envkit import`` of ``envkit export``):
    without what the loader adds — the stub image, its configuration variable, its default probe."""
    out = {k: v for k, v in spec.items() if k not in ("image", "build")}
    if out.get("ready") == "healthcheck":  # inferred from a dependant's service_healthy: the stub image has none
        del out["ready"]
    env = out.get("environment")
    if isinstance(env, dict):
        env = {k: v for k, v in env.items() if k != CONFIG_VAR}
    elif isinstance(env, list):
        env = [x for x in env if not str(x).startswith(CONFIG_VAR + "=")]
    if env:
        out["environment"] = env
    else:
        out.pop("environment", None)
    return out
