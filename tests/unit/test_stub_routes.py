"""The stub's route logic, pure: matching, ordered responses, templates, the closest routes of a 404."""

from __future__ import annotations

import datetime as dt
import json

from envkit.stubs.server.stubserver.routes import Request, closest, match, pick, render, render_text

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def req(method: str = "GET", path: str = "/", body: object = None, **kw: object) -> Request:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return Request(method, path, body=raw, now=NOW, **kw)  # type: ignore[arg-type]


def test_path_parameters_and_wildcards() -> None:
    route = {"method": "GET", "path": "/charges/{id}"}
    assert match(route, req("GET", "/charges/ch_1")) == {"id": "ch_1"}
    assert match(route, req("GET", "/charges/ch_1/")) == {"id": "ch_1"}  # a trailing slash is the same path
    assert match(route, req("GET", "/charges")) is None
    assert match(route, req("GET", "/charges/a/b")) is None
    assert match(route, req("POST", "/charges/ch_1")) is None
    assert match({"path": "/a/*/c"}, req("DELETE", "/a/x/c")) == {}  # no method: any
    assert match({"path": "/files/**"}, req("GET", "/files/a/b/c")) == {}
    assert match({"path": "/files/**"}, req("GET", "/other/a")) is None
    assert match({"method": "get", "path": "/x"}, req("GET", "/x")) == {}  # method in any case


def test_query_headers_and_body_fields() -> None:
    route = {"path": "/pay", "query": {"mode": "test"}, "headers": {"X-Key": "k1"},
             "body": {"card.brand": "visa", "amount": 0, "items.0": "a", "flag": True}}
    good = {"card": {"brand": "visa"}, "amount": 0, "items": ["a"], "flag": True}
    ok = req("POST", "/pay", good, query={"mode": ["test"]}, headers={"x-key": "k1"})
    assert match(route, ok) == {}
    assert match(route, req("POST", "/pay", good, query={"mode": ["live"]}, headers={"x-key": "k1"})) is None
    assert match(route, req("POST", "/pay", good, query={"mode": ["test"]}, headers={})) is None
    for wrong in ({**good, "amount": 1}, {**good, "flag": 1}, {**good, "amount": False}, {**good, "items": []}):
        assert match(route, req("POST", "/pay", wrong, query={"mode": ["test"]}, headers={"x-key": "k1"})) is None
    # a body that is no JSON matches no body field
    assert match({"path": "/pay", "body": {"a": 1}}, req("POST", "/pay", b"{not json")) is None


def test_ordered_responses_repeat_the_last_or_cycle() -> None:
    route = {"path": "/", "responses": [{"status": 201}, {"status": 409}]}
    assert [pick(route, n)["status"] for n in (1, 2, 3, 4)] == [201, 409, 409, 409]
    route["cycle"] = True
    assert [pick(route, n)["status"] for n in (1, 2, 3, 4)] == [201, 409, 201, 409]


def test_templates_keep_types_when_alone_and_text_inside_strings() -> None:
    r = req("POST", "/charges/7", {"order_id": 42, "meta": {"tags": ["x"]}}, query={"q": ["1"]},
            headers={"x-trace": "t-9"}, id="abc", params={"id": "7"}, seq=3)
    value = {"order": "{{body.order_id}}", "text": "order {{ body.order_id }} of {{path.id}}", "id": "{{request.id}}",
             "n": "{{request.seq}}", "tags": "{{body.meta.tags}}", "q": "{{query.q}}", "h": "{{header.X-Trace}}",
             "missing": "{{body.nope}}", "mixed_missing": "[{{body.nope}}]", "list": ["{{request.method}}"]}
    assert render(value, r) == {"order": 42, "text": "order 42 of 7", "id": "abc", "n": 3, "tags": ["x"], "q": "1",
                                "h": "t-9", "missing": None, "mixed_missing": "[]", "list": ["POST"]}
    assert render_text("{{body}}", r) == '{"order_id": 42, "meta": {"tags": ["x"]}}'


def test_dates_in_any_format() -> None:
    r = req()
    assert render_text("{{now}}", r) == "2026-03-04T05:06:07Z"
    assert render_text("{{now:iso}}", r) == "2026-03-04T05:06:07Z"
    assert render_text("{{now:%d/%m/%Y %H:%M}}", r) == "04/03/2026 05:06"
    assert render_text("{{now:epoch}}", r) == str(int(NOW.timestamp()))
    assert render_text("{{now:epoch_ms}}", r) == str(int(NOW.timestamp()) * 1000)
    assert render_text("{{now:rfc1123}}", r) == "Wed, 04 Mar 2026 05:06:07 GMT"


def test_closest_routes_for_an_unmatched_request() -> None:
    routes = [{"method": "POST", "path": "/charges"}, {"method": "GET", "path": "/charges/{id}"},
              {"method": "GET", "path": "/health"}, {"path": "/refunds"}]
    near = closest(routes, req("POST", "/charge"))
    assert near[0] == "POST /charges"
    assert len(near) == 3


def test_body_field_operators() -> None:
    route = {"path": "/c", "body": {"amount": {"$lte": 0}, "email": {"$regex": "@example\\."}}}
    assert match(route, req("POST", "/c", {"amount": -5, "email": "a@example.test"})) == {}
    assert match(route, req("POST", "/c", {"amount": 1, "email": "a@example.test"})) is None
    assert match(route, req("POST", "/c", {"amount": "x", "email": "a@example.test"})) is None  # no TypeError
    assert match(route, req("POST", "/c", {"amount": 0, "email": "a@other.test"})) is None
    assert match({"path": "/c", "body": {"n": {"$gt": 1, "$lt": 3}}}, req("POST", "/c", {"n": 2})) == {}
    assert match({"path": "/c", "body": {"n": {"$ne": 2}}}, req("POST", "/c", {"n": 2})) is None
    # a mapping with other keys is a JSON object to equal
    assert match({"path": "/c", "body": {"o": {"a": 1}}}, req("POST", "/c", {"o": {"a": 1}})) == {}
