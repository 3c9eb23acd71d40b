"""Pure route logic of the stub: match a request against the routes, pick the response, render its template.

No I/O here (the clock and the request id are passed in), so envkit's unit tests import this module
directly. Standard library only: it also runs inside the stub's image.

A route (the JSON envkit builds from the blueprint's ``stub:`` key, docs/stubs.md)::

    {"method": "POST", "path": "/charges/{id}", "query": {...}, "headers": {...}, "body": {"a.b": value},
     "responses": [response, ...], "cycle": false, "scenario": "cart", "state": "empty", "set_state": "filled"}

State (WireMock's scenarios): each scenario has one current state, ``started`` unless the config's
``"scenarios": {name: initial}`` says otherwise. A route with ``state`` answers only while its scenario
(``default`` when it names none) is in that state; one with ``set_state`` moves it there once it answers.

A body field's value is compared for equality, or by operators: ``{"$lt" | "$lte" | "$gt" | "$gte" |
"$ne": value, "$regex": pattern}``.

A response: ``{"status": 200, "headers": {...}, "json": value | "text": str | "b64": str,
"delay": [low, high], "fault": name | null}``. Templates: ``{{path.id}}``, ``{{query.q}}``,
``{{header.name}}``, ``{{body.a.b}}``, ``{{body}}``, ``{{request.id}}``, ``{{request.seq}}``,
``{{request.method}}``, ``{{request.path}}``, ``{{state}}``, ``{{state.NAME}}``, ``{{now}}``,
``{{now:FORMAT}}`` (strftime, or ``iso``, ``epoch``, ``epoch_ms``, ``rfc1123``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

__all__ = ["DEFAULT_SCENARIO", "FAULTS", "INITIAL_STATE", "Request", "allowed", "closest", "initial_states",
           "is_operators", "match", "pick", "render", "render_text", "scenario_of"]

FAULTS = ("reset", "empty", "malformed_chunk", "random_then_close", "malformed_json")
DEFAULT_SCENARIO = "default"
INITIAL_STATE = "started"
_MISSING = object()
_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""
    id: str = ""
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    params: dict[str, str] = field(default_factory=dict)  # filled by match()
    seq: int = 0  # the how-many-th call of the route that answers, filled by the server
    states: dict[str, str] = field(default_factory=dict)  # each scenario's state once this request answered

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return _MISSING


def _path_match(pattern: str, path: str) -> dict[str, str] | None:
    want = pattern.strip("/").split("/")
    got = path.strip("/").split("/")
    if want and want[-1] == "**":  # the rest of the path, any depth
        if len(got) < len(want) - 1:
            return None
        want, got = want[:-1], got[:len(want) - 1]
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{") and w.endswith("}") and len(w) > 2:
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != "*" and w != g:
            return None
    return params


def field_of(value: Any, dotted: str) -> Any:
    """``a.b.0.c`` of a JSON value; ``_MISSING`` when absent."""
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_OPS: dict[str, Callable[[Any, Any], bool]] = {"$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b, "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b, "$ne": lambda a, b: not _same(b, a),
        "$regex": lambda a, b: isinstance(a, str) and re.search(b, a) is not None}


def is_operators(want: Any) -> bool:
    """``{"$lte": 0}``: a comparison, not a JSON object to equal."""
    return isinstance(want, dict) and bool(want) and all(k in _OPS for k in want)


def _same(want: Any, got: Any) -> bool:
    if is_operators(want):
        try:
            return all(_OPS[op](got, arg) for op, arg in want.items())
        except TypeError:  # "abc" < 3
            return False
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    return bool(want == got)


def match(route: dict[str, Any], req: Request) -> dict[str, str] | None:
    """The path parameters when ``route`` answers ``req``, else None."""
    method = str(route.get("method", "ANY")).upper()
    if method not in ("ANY", "*") and method != req.method.upper():
        return None
    params = _path_match(str(route["path"]), req.path)
    if params is None:
        return None
    for key, want in (route.get("query") or {}).items():
        if str(want) not in req.query.get(key, []):
            return None
    for key, want in (route.get("headers") or {}).items():
        if req.headers.get(key.lower()) != str(want):
            return None
    fields = route.get("body") or {}
    if fields:
        doc = req.json()
        if doc is _MISSING:
            return None
        for dotted, want in fields.items():
            got = field_of(doc, dotted)
            if got is _MISSING or not _same(want, got):
                return None
    return params


def scenario_of(route: dict[str, Any]) -> str:
    return str(route.get("scenario") or DEFAULT_SCENARIO)


def initial_states(config: dict[str, Any]) -> dict[str, str]:
    """Each scenario the routes use (or the config declares), in its initial state."""
    states = {scenario_of(r): INITIAL_STATE for r in config.get("routes", []) if "state" in r or "set_state" in r}
    states.update({str(k): str(v) for k, v in (config.get("scenarios") or {}).items()})
    return states


def allowed(route: dict[str, Any], states: dict[str, str]) -> bool:
    """Whether the route's required state (if any) is its scenario's current one."""
    want = route.get("state")
    return want is None or states.get(scenario_of(route), INITIAL_STATE) == str(want)


def pick(route: dict[str, Any], calls: int) -> dict[str, Any]:
    """The response to the ``calls``-th call (1-based): ordered responses, the last one repeats (or they cycle)."""
    responses = route["responses"]
    index = calls - 1
    if route.get("cycle"):
        index %= len(responses)
    return dict(responses[min(index, len(responses) - 1)])


def _now(req: Request, fmt: str | None) -> str:
    if fmt in (None, "", "iso"):
        return req.now.isoformat().replace("+00:00", "Z")
    if fmt == "epoch":
        return str(int(req.now.timestamp()))
    if fmt == "epoch_ms":
        return str(int(req.now.timestamp() * 1000))
    if fmt == "rfc1123":
        return format_datetime(req.now, usegmt=True)
    return req.now.strftime(fmt)


def _value(expr: str, req: Request) -> Any:
    head, _, rest = expr.partition(".")
    if head.startswith("now"):
        return _now(req, expr[4:] if expr.startswith("now:") else None)
    if head == "path":
        return req.params.get(rest, _MISSING)
    if head == "query":
        values = req.query.get(rest)
        return values[0] if values else _MISSING
    if head == "header":
        return req.headers.get(rest.lower(), _MISSING)
    if head == "body":
        if not rest:
            return req.body.decode("utf-8", "replace")
        doc = req.json()
        return _MISSING if doc is _MISSING else field_of(doc, rest)
    if head == "state":
        return req.states.get(rest or DEFAULT_SCENARIO, _MISSING)
    if head == "request":
        return {"id": req.id, "seq": req.seq, "method": req.method, "path": req.path}.get(rest, _MISSING)
    return _MISSING


def _text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def render_text(template: str, req: Request) -> str:
    return _TEMPLATE.sub(lambda m: _text(_value(m.group(1), req)), template)


def render(value: Any, req: Request) -> Any:
    """A JSON value with every string templated; a string that is one template alone keeps the value's
    JSON type (``"{{body.amount}}"`` stays a number)."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value)
        if whole:
            got = _value(whole.group(1), req)
            return None if got is _MISSING else got
        return render_text(value, req)
    if isinstance(value, list):
        return [render(v, req) for v in value]
    if isinstance(value, dict):
        return {k: render(v, req) for k, v in value.items()}
    return value


def closest(routes: list[dict[str, Any]], req: Request, n: int = 3) -> list[str]:
    """The routes nearest to the request, as ``METHOD /path``, for the 404 of an unmatched request."""
    shown = [f"{str(r.get('method', 'ANY')).upper()} {r['path']}" for r in routes]
    near = difflib.get_close_matches(f"{req.method.upper()} {req.path}", shown, n=n, cutoff=0.0)
    return list(dict.fromkeys(near))
