"""The stub server in this process on a loopback port (the same code the stub image runs), driven by the
client: routes from a loaded blueprint, the journal, run-time responses, reset, and the faults as a
client sees them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from envkit.blueprint.model import Blueprint
from envkit.errors import BlueprintError
from envkit.stubs.client import StubClient, StubError
from envkit.stubs.model import CONFIG_VAR
from envkit.stubs.server import stubserver as stub_server_package
from envkit.stubs.server.stubserver.server import Handler, State

BLUEPRINT = """
services:
  pay:
    kind: stub
    stub:
      routes:
        - {method: GET, path: /health, json: {status: ok}}
        - method: POST
          path: /charges
          match: {body: {amount_cents: 0}}
          status: 402
          json: {error: declined}
        - method: POST
          path: /charges
          name: charge
          status: 201
          headers: {X-Request-Id: "{{request.id}}"}
          json: {id: "ch_{{request.seq}}", order_id: "{{body.order_id}}"}
        - method: GET
          path: /charges/{id}
          responses:
            - {json: {id: "{{path.id}}", status: pending}}
            - {json: {id: "{{path.id}}", status: captured}, delay: 10ms}
        - {path: /receipt, file: receipt.txt, headers: {Content-Type: text/plain}}
"""


def serve(bp: Blueprint, service: str) -> Iterator[tuple[str, StubClient]]:
    """The stub server of ``service`` in this process on a free port: its URL and a client; shut after."""
    config = json.loads(dict(bp.services[service].environment)[CONFIG_VAR])
    handler = type("H", (Handler,), {"state": State(config), "log_message": lambda *a: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://127.0.0.1:{port}", StubClient.at("127.0.0.1", port, service)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def stub(load_text: Callable[..., Blueprint]) -> Iterator[tuple[str, StubClient]]:
    yield from serve(load_text(BLUEPRINT, {"receipt.txt": "thank you\n"}), "pay")


def call(url: str, method: str = "GET", body: object = None) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_routes_answer_and_the_journal_records(stub: tuple[str, StubClient]) -> None:
    url, pay = stub
    assert call(url + "/health")[2] == b'{"status": "ok"}'
    status, headers, body = call(url + "/charges", "POST", {"order_id": 7, "amount_cents": 500})
    assert status == 201 and json.loads(body) == {"id": "ch_1", "order_id": 7}
    assert len(headers["X-Request-Id"]) == 16
    assert call(url + "/charges", "POST", {"order_id": 8, "amount_cents": 0})[0] == 402
    assert json.loads(call(url + "/charges", "POST", {"order_id": 9, "amount_cents": 1})[2])["id"] == "ch_2"
    assert [json.loads(call(url + "/charges/ch_1")[2])["status"] for _ in range(3)] == ["pending", "captured",
                                                                                         "captured"]
    assert call(url + "/receipt")[2] == b"thank you\n"
    status, _, body = call(url + "/charge", "POST", {})
    assert status == 404 and json.loads(body)["closest"][0] == "POST /charges"

    assert pay.called("POST", "/charges") == 3
    assert pay.called("POST", "/charge") == 1 and pay.journal("POST", "/charge")[0].route is None
    assert pay.called(route="charge") == 2
    assert pay.called("GET", "/charges/{id}") == 3
    assert pay.called(path="/**") == 9
    charges = pay.assert_called("POST", "/charges", times=3)
    assert [c.json()["order_id"] for c in charges] == [7, 8, 9]
    assert [c.status for c in charges] == [201, 402, 201]
    assert charges[0].header("content-type") == "application/json" and charges[0].status == 201
    assert [e.seq for e in pay.journal()] == list(range(1, 10))
    with pytest.raises(StubError, match=r"expected exactly 1 POST /charges, got 3; last received: .*GET /health"):
        pay.assert_called("POST", "/charges", times=1)
    pay.assert_not_called("DELETE")


def test_respond_overrides_once_or_until_reset(stub: tuple[str, StubClient]) -> None:
    url, pay = stub
    pay.respond("POST", "/charges", status=502, times=1)
    assert call(url + "/charges", "POST", {"order_id": 1})[0] == 502
    assert call(url + "/charges", "POST", {"order_id": 1})[0] == 201  # one-shot: the blueprint's route again
    pay.respond("POST", "/charges", status=503, json={"retry": "{{body.order_id}}"})
    for _ in range(2):
        status, _, body = call(url + "/charges", "POST", {"order_id": 5})
        assert (status, json.loads(body)) == (503, {"retry": 5})
    pay.respond("GET", "/health", responses=[{"status": 500}, {"status": 200, "text": "back"}], times=2)
    assert [call(url + "/health")[0] for _ in range(3)] == [500, 200, 200]
    pay.reset()
    assert pay.journal() == []
    status, _, body = call(url + "/charges", "POST", {"order_id": 5})
    assert status == 201 and json.loads(body)["id"] == "ch_1"  # call counts start over too
    pay.clear_journal()
    assert pay.called() == 0
    with pytest.raises(StubError, match="unknown fault"):
        pay.respond("GET", "/x", fault="explode")


def _raw(url: str, path: str) -> bytes | BaseException:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except OSError as exc:
            return exc
        return got


def test_faults_are_seen_by_a_client(stub: tuple[str, StubClient]) -> None:
    url, pay = stub
    pay.respond("GET", "/f", fault="reset", times=1)
    assert isinstance(_raw(url, "/f"), ConnectionResetError)
    pay.respond("GET", "/f", fault="empty", times=1)
    assert _raw(url, "/f") == b""
    pay.respond("GET", "/f", fault="random_then_close", times=1)
    got = _raw(url, "/f")
    assert isinstance(got, bytes) and 64 <= len(got) <= 1024 and not got.startswith(b"HTTP/")
    pay.respond("GET", "/f", fault="malformed_chunk", times=1)
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    conn.request("GET", "/f")
    with pytest.raises(http.client.HTTPException):
        conn.getresponse().read()
    conn.close()
    pay.respond("GET", "/f", json={"id": 1, "at": "{{now}}"}, fault="malformed_json", times=1)
    status, headers, body = call(url + "/f")
    assert status == 200 and headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)
    pay.respond("GET", "/f", delay=0.3, times=1)
    start = time.monotonic()
    assert call(url + "/f")[0] == 200
    assert time.monotonic() - start >= 0.3
    assert pay.called("GET", "/f") == 6
    # the journal says which answers were broken on purpose: a reset is no "200"
    assert [e.fault for e in pay.journal("GET", "/f")] == ["reset", "empty", "random_then_close", "malformed_chunk",
                                                           "malformed_json", None]


@pytest.mark.parametrize(("text", "message"), [
    ("pay: {kind: stub}", "services.pay: a 'kind: stub' service needs a 'stub:' key"),
    ("pay: {kind: stub, image: x, stub: {}}", "services.pay.image: a stub service has no 'image'"),
    ("pay: {image: x, stub: {}}", "services.pay.stub: 'stub:' needs 'kind: stub'"),
    ("pay: {kind: stub, stub: {routes: [{method: GET}]}}", "services.pay.stub.routes[0]: a route needs a 'path'"),
    ("pay: {kind: stub, stub: {routes: [{path: x}]}}", "HTTP path must start with '/'"),
    ("pay: {kind: stub, stub: {routes: [{path: /, method: FETCH}]}}", "unknown HTTP method 'FETCH'"),
    ("pay: {kind: stub, stub: {routes: [{path: /, fault: boom}]}}", "unknown fault 'boom'; use one of reset"),
    ("pay: {kind: stub, stub: {routes: [{path: /, status: 700}]}}", "expected an HTTP status (100..599), got 700"),
    ("pay: {kind: stub, stub: {routes: [{path: /, json: 1, body: x}]}}", "use one of json, body or file"),
    ("pay: {kind: stub, stub: {routes: [{path: /, file: nope.json}]}}", "body file 'nope.json' does not exist"),
    ("pay: {kind: stub, stub: {routes: [{path: /, delay: [2s, 1s]}]}}", "the high end ('1s') is below the low end"),
    ("pay: {kind: stub, stub: {routes: [{path: /, responses: []}]}}", "expected a non-empty list of responses"),
    ("pay: {kind: stub, stub: {routes: [{path: /, status: 201, responses: [{}]}]}}", "use either 'responses'"),
    ("pay: {kind: stub, stub: {routes: [{path: /, body: '{{now:yesterday}}'}]}}", "date format 'yesterday'"),
    ("pay: {kind: stub, stub: {routes: [{path: /, match: {body: {a: {$regex: '('}}}}]}}",
     "services.pay.stub.routes[0].match.body.a.$regex: not a regular expression"),
    ("pay: {kind: stub, stub: {routes: [{path: /__envkit/journal}]}}", "the stub's control API"),
    ("pay: {kind: stub, stub: {port: 80}}", "services.pay.stub.port: expected a stub port (1024..65535)"),
    ("pay: {kind: stub, stub: {routes: [{path: /, match: {bodyy: {}}}]}}", "unknown key 'bodyy' (did you mean 'body'?)"),
])
def test_bad_stubs_are_named_by_key_path(load_text: Callable[..., Blueprint], text: str, message: str) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text("services:\n  " + text + "\n")
    assert message in str(err.value)


def test_a_stub_becomes_a_service_of_the_stub_image(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("services:\n  pay: {kind: stub, ports: [9000], stub: {port: 9000, routes: [{path: /}]}}\n")
    svc = bp.services["pay"]
    from envkit.images import image_tag
    from envkit.stubs.image import CONTEXT
    assert svc.build is not None and svc.build.context == CONTEXT
    assert image_tag(bp.name, svc.build).startswith("envkit/stub:")  # one image for every blueprint
    assert svc.ready is not None and (svc.ready.kind, svc.ready.port, svc.ready.path) == ("http", 9000,
                                                                                       "/__envkit/health")
    assert json.loads(dict(svc.environment)[CONFIG_VAR])["port"] == 9000
    assert bp.warnings == ()  # the packaged context is no host path the blueprint reaches for


def test_the_stub_process_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """As a container's PID 1 a process has no default SIGTERM action: the server must handle it, or every
    `docker stop` of a stub (a stop fault, env.stop, teardown) waits out the grace and ends in SIGKILL (137)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_dir = Path(stub_server_package.__file__).parent.parent  # the image runs it from there
    env = {**os.environ, CONFIG_VAR: json.dumps({"port": port, "routes": []})}
    proc = subprocess.Popen([sys.executable, "-m", "stubserver"], cwd=server_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert "route(s) on http://" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # without a handler: -15 here, 137 after the grace in a container
        assert "envkit-stub: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
