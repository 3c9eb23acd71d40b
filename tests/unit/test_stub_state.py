"""Stub state (WireMock's scenarios): routes that require a state and move to another, the state read and
set at run time, reset() back to the initial states; the server in this process, the same code the image runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from envkit.blueprint.model import Blueprint
from envkit.errors import BlueprintError
from envkit.stubs.client import StubClient, StubError
from envkit.stubs.server.stubserver.routes import Request, allowed, initial_states, render
from tests.unit.test_stub_server import serve

BLUEPRINT = """
services:
  shop:
    kind: stub
    stub:
      scenarios: {cart: empty, login: out}
      routes:
        - {method: POST, path: /login, scenario: login, set_state: in, status: 204}
        - {method: POST, path: /cart, scenario: cart, state: empty, set_state: filled, status: 201,
           json: {cart: "{{state.cart}}"}}
        - {method: POST, path: /cart, scenario: cart, state: filled, status: 409, json: {error: full}}
        - {method: GET, path: /cart, scenario: cart, state: empty, json: {items: []}}
        - {method: GET, path: /cart, scenario: cart, state: filled, json: {items: [{sku: a}]}}
        - {method: DELETE, path: /cart, scenario: cart, set_state: empty, status: 204}
        - {method: GET, path: /whoami, scenario: login, state: in, json: {user: ada}}
        - {method: GET, path: /whoami, status: 401, json: {login: "{{state.login}}"}}
"""


@pytest.fixture
def stub(load_text: Callable[..., Blueprint]) -> Iterator[tuple[str, StubClient]]:
    yield from serve(load_text(BLUEPRINT), "shop")


def call(url: str, method: str = "GET") -> tuple[int, object]:
    request = urllib.request.Request(url, data=b"{}" if method != "GET" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        with e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None


def test_a_post_moves_the_cart_and_gets_answer_by_state(stub: tuple[str, StubClient]) -> None:
    url, shop = stub
    assert shop.states() == {"cart": "empty", "login": "out"}
    assert call(url + "/cart") == (200, {"items": []})
    assert call(url + "/cart", "POST") == (201, {"cart": "filled"})  # {{state.cart}}: after its own move
    assert call(url + "/cart") == (200, {"items": [{"sku": "a"}]})
    assert call(url + "/cart", "POST") == (409, {"error": "full"})
    assert shop.state("cart") == "filled"
    assert call(url + "/cart", "DELETE") == (204, None)
    assert call(url + "/cart") == (200, {"items": []})
    # scenarios are independent; a route without a state answers in any state
    assert call(url + "/whoami") == (401, {"login": "out"})
    assert call(url + "/login", "POST")[0] == 204
    assert call(url + "/whoami") == (200, {"user": "ada"})
    # the journal is unchanged by state: every request, with the route that answered
    assert [e.status for e in shop.journal("POST", "/cart")] == [201, 409]


def test_state_is_set_at_run_time_and_reset_restores_the_initial_states(stub: tuple[str, StubClient]) -> None:
    url, shop = stub
    shop.set_state("filled", "cart")
    assert call(url + "/cart") == (200, {"items": [{"sku": "a"}]})
    shop.set_state("in", scenario="login")
    assert shop.states() == {"cart": "filled", "login": "in"}
    shop.reset()
    assert shop.states() == {"cart": "empty", "login": "out"} and shop.called() == 0
    assert call(url + "/cart") == (200, {"items": []})
    with pytest.raises(StubError, match=r"no scenario 'basket'; known: cart, login"):
        shop.set_state("x", "basket")
    with pytest.raises(StubError, match="has no scenario 'basket'"):
        shop.state("basket")


def test_run_time_responses_take_a_state_too(stub: tuple[str, StubClient]) -> None:
    url, shop = stub
    shop.respond("GET", "/cart", status=503, scenario="cart", state="filled", set_state="broken")
    assert call(url + "/cart")[0] == 200  # empty: the response waits for "filled"
    shop.set_state("filled", "cart")
    assert call(url + "/cart")[0] == 503
    assert shop.state("cart") == "broken"
    assert call(url + "/cart")[0] == 404  # no route answers in "broken": the closest are named
    shop.respond("GET", "/outage", status=500, scenario="partner", set_state="down")
    assert shop.states()["partner"] == "started"  # not in the blueprint: it starts in "started"
    shop.set_state("up", "partner")  # a run-time response's scenario is known
    assert call(url + "/outage")[0] == 500 and shop.state("partner") == "down"


def test_pure_state_logic() -> None:
    config = {"routes": [{"path": "/a", "state": "x"}, {"path": "/b", "scenario": "s", "set_state": "y"}],
              "scenarios": {"s": "z"}}
    assert initial_states(config) == {"default": "started", "s": "z"}
    assert not allowed(config["routes"][0], {"default": "started"})
    assert allowed(config["routes"][0], {"default": "x"}) and allowed({"path": "/"}, {})
    assert render("{{state}}/{{state.s}}/{{state.none}}", Request("GET", "/", states={"default": "d", "s": "q"})) \
        == "d/q/"


@pytest.mark.parametrize(("text", "message"), [
    ("{scenarios: {cart: empty}, routes: [{path: /, scenario: crt, state: empty}]}",
     "services.pay.stub.routes[0].scenario: scenario 'crt' is not in stub.scenarios (did you mean 'cart'?)"),
    ("{scenarios: {cart: empty}, routes: [{path: /, state: empty}]}",
     "services.pay.stub.routes[0]: scenario 'default' is not in stub.scenarios (declared: cart)"),
    ("{routes: [{path: /, scenario: cart}]}",
     "services.pay.stub.routes[0].scenario: a scenario without 'state' or 'set_state' does nothing"),
    ("{routes: [{path: /, state: 'an empty cart'}]}", "services.pay.stub.routes[0].state: expected a state name"),
    ("{routes: [{path: /, set_state: {a: 1}}]}", "services.pay.stub.routes[0].set_state: expected a state name"),
    ("{scenarios: [cart], routes: [{path: /}]}", "services.pay.stub.scenarios: expected a mapping"),
    ("{routes: [{path: /, stat: x}]}", "unknown key 'stat' (did you mean 'state'?)"),
])
def test_bad_state_keys_are_named_by_key_path(load_text: Callable[..., Blueprint], text: str, message: str) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text(f"services:\n  pay: {{kind: stub, stub: {text}}}\n")
    assert message in str(err.value)


def test_state_keys_survive_export(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(BLUEPRINT)
    stub = bp.services["shop"].stub
    assert stub is not None
    written = stub.blueprint(bp.directory)
    assert written["scenarios"] == {"cart": "empty", "login": "out"}
    assert written["routes"][1]["state"] == "empty" and written["routes"][1]["set_state"] == "filled"


def test_concurrent_requests_move_the_state_once(stub: tuple[str, StubClient]) -> None:
    url, shop = stub
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: call(url + "/cart", "POST")[0], range(8)))
    assert statuses == [201] + [409] * 7 and shop.state("cart") == "filled"
