"""The keys of a ``kind: stub`` service's ``stub:`` mapping (docs/stubs.md), one table per mapping, as in
``keys.py`` (which puts them in ``TABLES`` and refers to them from the service's ``stub`` key). The readers
are in ``stub_values.py``; the reference tables in docs/blueprint.md are generated from these.
"""

from __future__ import annotations

from typing import Any

from envkit.blueprint.readers import KeyDef, Table

__all__ = ["STUB", "STUB_MATCH", "STUB_RESPONSE", "STUB_ROUTE", "STUB_TABLES", "STUB_TLS"]

# The value forms' JSON Schema (keys.py has the same forms; a value may also be a ``${VAR}`` string).
STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
DURATION: dict[str, Any] = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
PAIRS: dict[str, Any] = {"anyOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean",
                                                                                         "null"]}},
                                   {"type": "array", "items": {"type": "string", "pattern": "="}}, {"type": "null"}]}
PORT_NUMBER: dict[str, Any] = {"type": ["integer", "string"]}

_RESPONSE_KEYS = (
    KeyDef("status", None, 200, "HTTP status 100..599", "`200`", "The response's status.",
           {"type": ["integer", "string"]}),
    KeyDef("headers", None, (), "key/value list", "none", "Response headers; each value is a template.", PAIRS),
    KeyDef("json", None, None, "any YAML value", "—", "A JSON body; every string in it is a template "
           "(`\"{{body.amount}}\"` alone keeps the value's type).", {}),
    KeyDef("body", None, None, "string", "—", "A text body, a template.", STRING),
    KeyDef("file", None, None, "file path", "—", "A file beside the blueprint (at most 64 KiB), sent as it is.",
           STRING),
    KeyDef("delay", None, None, "duration, or `[low, high]`", "none",
           "Waits before answering: fixed, or random within the range.",
           {"anyOf": [DURATION, {"type": "array", "items": DURATION, "minItems": 2, "maxItems": 2}]}),
    KeyDef("fault", None, None, "`reset`, `empty`, `malformed_chunk`, `random_then_close`, `malformed_json`",
           "none", "Answers badly on purpose; see [stubs.md](stubs.md#faults).",
           {"enum": ["reset", "empty", "malformed_chunk", "random_then_close", "malformed_json"]}),
)

STUB_RESPONSE = Table("stub-response", _RESPONSE_KEYS)

STUB_MATCH = Table("stub-match", (
    KeyDef("query", None, (), "key/value list", "none", "Query parameters the request must have.", PAIRS),
    KeyDef("headers", None, (), "key/value list", "none", "Headers the request must have (names in any case).",
           PAIRS),
    KeyDef("body", None, None, "mapping: JSON field (`a.b.0`) → value", "none",
           "Fields the request's JSON body must hold, with these values.", {"type": ["object", "null"]}),
))

STUB_ROUTE = Table("stub-route", (
    KeyDef("method", None, "ANY", "HTTP method, or `ANY`", "`ANY`", "The request's method.", STRING),
    KeyDef("path", None, None, "path pattern", "required",
           "`/charges/{id}`: `{name}` is one segment, kept as `path.name`; `*` any segment; a final `**` the rest.",
           STRING),
    KeyDef("match", None, None, "[mapping](#stub-match)", "none", "More the request must match.",
           {"$ref": "#/$defs/stub-match"}),
    KeyDef("responses", None, None, "list of [responses](#stub-response)", "—",
           "Ordered responses: the first call gets the first; then the last repeats (or they cycle).",
           {"type": "array", "items": {"$ref": "#/$defs/stub-response"}, "minItems": 1}),
    KeyDef("cycle", None, False, "boolean", "`false`", "Ordered responses start over after the last.", BOOLEAN),
    KeyDef("name", None, None, "string", "`METHOD path`", "The route's name in the journal.", STRING),
    KeyDef("scenario", None, None, "scenario name", "`default`",
           "The state machine `state` and `set_state` refer to ([stubs.md](stubs.md#state)).", STRING),
    KeyDef("state", None, None, "state name", "any state",
           "The route answers only while its scenario is in this state.", STRING),
    KeyDef("set_state", None, None, "state name", "unchanged",
           "Once the route answers, its scenario moves to this state.", STRING),
    *_RESPONSE_KEYS,
))

STUB_TLS = Table("stub-tls", (
    KeyDef("names", None, (), "list of host names or IP addresses", "none",
           "More names the certificate is valid for, beside the service's own (see [stubs.md](stubs.md#tls)).",
           {"type": "array", "items": {"type": "string"}}),
))

STUB = Table("stub", (
    KeyDef("port", None, 8080, "port 1024..65535", "`8080`", "The port the stub listens on (and its control API).",
           PORT_NUMBER),
    KeyDef("routes", None, (), "list of [routes](#stub-route)", "none", "Tried in order; the first that matches answers.",
           {"type": "array", "items": {"$ref": "#/$defs/stub-route"}}),
    KeyDef("default", None, None, "[response](#stub-response)", "404 naming the closest routes",
           "The answer to a request no route matches.", {"$ref": "#/$defs/stub-response"}),
    KeyDef("scenarios", None, (), "mapping: scenario → initial state", "each starts in `started`",
           "The scenarios the routes' `state`/`set_state` use, and the state each starts (and resets) in.",
           {"type": ["object", "null"], "additionalProperties": {"type": ["string", "number"]}}),
    KeyDef("tls", None, False, "boolean, or a [mapping](#stub-tls)", "`false`",
           "HTTPS with a certificate of a CA envkit makes for the run; `${services.NAME.ca_pem}` / `ca_file` "
           "hand its certificate to tests ([stubs.md](stubs.md#tls)).",
           {"anyOf": [BOOLEAN, {"$ref": "#/$defs/stub-tls"}]}),
))

STUB_TABLES: dict[str, Table] = {t.title: t for t in (STUB, STUB_ROUTE, STUB_MATCH, STUB_RESPONSE, STUB_TLS)}
