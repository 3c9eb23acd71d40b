"""`kind: stub` on the real engine: the stub image starts fast, routes answer from the host and from
another container, the journal records, run-time responses change behaviour, faults are seen by clients,
the CLI steers it, and teardown leaves nothing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

import envkit
from envkit import labels as L
from envkit.backends import Backend
from envkit.events import Event
from envkit.stubs.client import StubError

from .conftest import TEST_BLUEPRINTS, envkit_cli, resources_of

BLUEPRINT = TEST_BLUEPRINTS / "stub"

#: run in the gateway's container: one request to the partner stub by its DNS name; prints what happened
CLIENT = """
import http.client, json, sys
c = http.client.HTTPConnection("partner", 9000, timeout=5)
try:
    c.request("GET", sys.argv[1])
    r = c.getresponse()
    body = r.read()
    try:
        json.loads(body)
        print("OK", r.status)
    except ValueError:
        print("BADJSON", r.status)
except Exception as e:
    print("ERR", type(e).__name__)
"""


@pytest.fixture(scope="module")
def env(backend: Backend) -> Iterator[envkit.Environment]:
    events: list[Event] = []
    with envkit.up(BLUEPRINT, name="it-stubs", backend=backend, on_event=events.append) as e:
        yield e
    assert resources_of(backend, "it-stubs") == []


def call(url: str, method: str = "GET", body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def from_gateway(env: envkit.Environment, path: str) -> str:
    result = env.exec("gateway", ["python3", "-c", CLIENT, path])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_routes_answer_and_the_journal_records(env: envkit.Environment) -> None:
    url = env.outputs["GATEWAY_URL"]
    gateway = env.stub("gateway")
    gateway.reset()
    status, body = call(url + "/charges", "POST", {"order_id": 3, "amount_cents": 990})
    assert status == 201 and json.loads(body)["id"] == "ch_1" and json.loads(body)["order_id"] == 3
    assert call(url + "/charges", "POST", {"order_id": 4, "amount_cents": 0})[0] == 402
    assert call(url + "/charges/ch_1") == (200, b'{"id": "ch_1"}')
    assert call(url + "/terms") == (200, b"terms and conditions\n")
    status, body = call(url + "/refunds", "POST", {})
    assert status == 404 and "POST /charges" in json.loads(body)["closest"]
    charges = gateway.assert_called("POST", "/charges", times=2)
    assert [c.json()["order_id"] for c in charges] == [3, 4] and [c.status for c in charges] == [201, 402]
    assert gateway.called(route="charge") == 1 and gateway.called() == 5


def test_respond_changes_behaviour_until_reset(env: envkit.Environment) -> None:
    url = env.outputs["GATEWAY_URL"]
    gateway = env.stub("gateway")
    gateway.respond("POST", "/charges", status=502, times=1)
    assert call(url + "/charges", "POST", {"order_id": 1, "amount_cents": 1})[0] == 502
    assert call(url + "/charges", "POST", {"order_id": 1, "amount_cents": 1})[0] == 201
    gateway.respond("GET", "/health", status=503)
    assert [call(url + "/health")[0] for _ in range(2)] == [503, 503]
    gateway.reset()
    assert call(url + "/health")[0] == 200 and gateway.called() == 1


def test_an_unpublished_stub_is_steered_through_exec_and_faults_reach_other_containers(
        env: envkit.Environment) -> None:
    partner = env.stub("partner")  # publishes no port: control calls run in its container
    partner.reset()
    assert from_gateway(env, "/rates/EUR") == "OK 200"
    assert from_gateway(env, "/nothing") == "BADJSON 418"  # the blueprint's default answer
    partner.respond("GET", "/rates/{c}", fault="reset", times=1)
    assert from_gateway(env, "/rates/EUR") == "ERR ConnectionResetError"
    partner.respond("GET", "/rates/{c}", fault="empty", times=1)
    assert from_gateway(env, "/rates/EUR") == "ERR RemoteDisconnected"
    partner.respond("GET", "/rates/{c}", json={"rate": 1}, fault="malformed_json", times=1)
    assert from_gateway(env, "/rates/EUR") == "BADJSON 200"
    partner.respond("GET", "/rates/{c}", delay=6, times=1)  # longer than the client's 5 s timeout
    assert from_gateway(env, "/rates/EUR") == "ERR TimeoutError"
    assert partner.called("GET", "/rates/{currency}") == 5
    with pytest.raises(StubError, match="unknown fault"):
        partner.respond("GET", "/x", fault="bogus")


def test_the_cli_reads_the_journal_and_responds(env: envkit.Environment) -> None:
    url = env.outputs["GATEWAY_URL"]
    env.stub("gateway").reset()
    said = envkit_cli("stub", "it-stubs", "gateway", "respond", "GET", "/health", "--status", "500", "--times",
                      "1", check=True).stderr
    assert "gateway: GET /health answers 500 for the next 1 call(s)" in said
    assert call(url + "/health")[0] == 500
    done = envkit_cli("stub", "it-stubs", "gateway", "journal", "--method", "GET", "--count", check=True)
    assert done.stdout.strip() == "1"
    listing = envkit_cli("stub", "it-stubs", "gateway", "journal", check=True).stdout
    assert "GET    /health -> 500 (respond)" in listing
    said = envkit_cli("stub", "it-stubs", "gateway", "respond", "GET", "/never", "--fault", "empty",
                      check=True).stderr
    assert "gateway: GET /never answers fault empty until reset" in said  # not "for until reset"
    with pytest.raises(OSError):
        call(url + "/never")
    listing = envkit_cli("stub", "it-stubs", "gateway", "journal", "--path", "/never", check=True).stdout
    assert "GET    /never -> fault empty (respond)" in listing  # not "-> 200": the client got no answer
    envkit_cli("stub", "it-stubs", "gateway", "reset", check=True)
    assert env.stub("gateway").called() == 0


def test_a_stop_fault_stops_the_stub_cleanly_and_heal_brings_it_back(env: envkit.Environment) -> None:
    """The stub process is its container's PID 1, which has no default SIGTERM action: it handles the signal
    itself, so a stop exits 0 at once instead of waiting out the grace and dying by SIGKILL (137, reported
    as a failure by `envkit status`)."""
    from envkit.faults import apply as faults

    url = env.outputs["GATEWAY_URL"]
    assert call(url + "/health")[0] == 200
    faults.apply(env.backend, env.run_id, "gateway", "stop", {"grace": "30s"})
    try:
        (state,) = env.backend.list_containers({L.RUN: env.run_id, L.SERVICE: "gateway", L.ROLE: "service"})
        assert env.backend.inspect_container(state.id).exit_code == 0
    finally:
        faults.heal(env.backend, env.run_id, "gateway")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if call(url + "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    assert call(url + "/health")[0] == 200
