"""The run's control endpoint (envkit.control) over real HTTP on 127.0.0.1, with callables standing in
for the run (the real engine's side is tests/integration/test_control.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from envkit import control
from envkit.errors import Conflict, EnvkitError, UsageError
from envkit.faults.records import FaultRecord


class Run:
    def __init__(self) -> None:
        self.resets: list[list[str]] = []
        self.heals: list[str | None] = []
        self.fail: BaseException | None = None

    def reset(self, names: Sequence[str]) -> dict[str, float]:
        if self.fail is not None:
            raise self.fail
        self.resets.append(list(names))
        return {n: 0.01 for n in names or ["db"]}

    def heal(self, service: str | None) -> list[FaultRecord]:
        self.heals.append(service)
        return [FaultRecord("f1", "r1", service or "db", "stop", {}, "2030-01-01T00:00:00Z", 1, ())]

    def document(self) -> dict[str, object]:
        return {"schema": "envkit.run/v1", "run": "r1"}


@pytest.fixture
def run() -> Run:
    return Run()


@pytest.fixture
def url(run: Run) -> Iterator[str]:
    with control.serving(control.Controls(run.reset, run.heal, run.document)) as base:
        yield base


def call(url: str, method: str = "POST", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def test_the_address_is_on_127_0_0_1_with_a_token_of_its_own() -> None:
    run = Run()
    with control.serving(control.Controls(run.reset, run.heal, run.document)) as one, \
            control.serving(control.Controls(run.reset, run.heal, run.document)) as other:
        assert one.startswith("http://127.0.0.1:")
        token = one.rsplit("/", 1)[1]
        assert len(token) >= 24 and token != other.rsplit("/", 1)[1]


def test_reset_takes_services_from_the_query_or_the_body(url: str, run: Run) -> None:
    assert call(f"{url}/reset?service=db") == (200, {"reset": {"db": 0.01}})
    assert call(f"{url}/reset?service=db,cache&service=api")[0] == 200
    assert call(f"{url}/reset", body={"services": ["db"]})[0] == 200
    assert call(f"{url}/reset") == (200, {"reset": {"db": 0.01}})  # none named: every snapshot service
    assert run.resets == [["db"], ["db", "cache", "api"], ["db"], []]


def test_heal_and_the_run_document(url: str, run: Run) -> None:
    assert call(f"{url}/heal?service=api") == (200, {"healed": [{"id": "f1", "service": "api", "fault": "stop api"}]})
    assert call(f"{url}/heal")[0] == 200
    assert run.heals == ["api", None]
    assert call(f"{url}/heal?service=a,b")[0] == 400
    assert call(f"{url}/run", "GET") == (200, {"schema": "envkit.run/v1", "run": "r1"})
    assert call(url, "GET")[0] == 200


@pytest.mark.parametrize(("error", "code"), [(UsageError("run r1 has no service 'x'"), 400),
                                             (Conflict("busy"), 409), (EnvkitError("engine said no"), 500),
                                             (RuntimeError("a bug"), 500)])
def test_a_failed_action_answers_its_message_with_a_status(url: str, run: Run, error: BaseException,
                                                          code: int) -> None:
    run.fail = error
    status, body = call(f"{url}/reset?service=x")
    assert status == code
    assert str(error) in body["error"]
    assert call(f"{url}/run", "GET")[0] == 200  # and the endpoint goes on answering


def test_a_wrong_token_or_action_or_body_is_refused(url: str, run: Run) -> None:
    base, token = url.rsplit("/", 1)
    assert call(f"{base}/{'x' * len(token)}/reset") == (404, {"error": "not found"})
    assert call(f"{base}/reset") == (404, {"error": "not found"})  # no token at all
    assert call(f"{url}/wipe")[0] == 404
    assert call(f"{url}/reset", body=["db"])[0] == 400
    assert call(f"{url}/reset", body={"services": "db"})[0] == 400
    request = urllib.request.Request(f"{url}/reset", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    refused.value.close()
    assert run.resets == []


def test_the_endpoint_stops_with_its_block() -> None:
    run = Run()
    with control.serving(control.Controls(run.reset, run.heal, run.document)) as url:
        pass
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(urllib.request.Request(f"{url}/run"), timeout=2)


def raw(url: str, request: bytes) -> bytes:
    """What the endpoint answers to bytes sent as they are (a client urllib would not be)."""
    base, token = url.rsplit("/", 1)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(request.replace(b"TOKEN", token.encode()))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1e3"])
def test_a_content_length_that_is_not_a_size_is_refused_without_reading_on(url: str, run: Run, length: bytes) -> None:
    # -1 read the body to the end of the connection (no bound: the 64 KiB limit was for positive lengths,
    # and a client that kept the connection open held its thread); a word was no answer at all, and a
    # traceback on the command's output.
    answer = raw(url, b"POST /TOKEN/reset HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ")
    assert run.resets == []


def test_a_path_that_is_not_ascii_is_not_found(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # secrets.compare_digest refuses a str that is not ASCII (TypeError): no answer, and a traceback
    # on the command's output, for any process on the host (it needs no token).
    assert raw(url, b"GET /\xc3\xa9t\xff/run HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.0 404 ")
    assert "Traceback" not in capsys.readouterr().err


def test_the_endpoint_stops_once_the_action_under_way_is_done_and_refuses_those_waiting() -> None:
    # envkit run tears the run down right after the block: a reset still running in the server's thread
    # (the command's child, or what it left behind, sent it as the command ended) would race the
    # teardown, and one waiting for the lock would begin on a run being removed.
    entered, go = threading.Event(), threading.Event()
    done: list[str] = []

    def reset(names: Sequence[str]) -> dict[str, float]:
        entered.set()
        go.wait(5)
        done.append("reset")
        return {}

    run = Run()
    answers: list[tuple[int, Any]] = []
    with control.serving(control.Controls(reset, run.heal, run.document)) as url:
        first = threading.Thread(target=lambda: answers.append(call(f"{url}/reset")))
        first.start()
        assert entered.wait(5)
        second = threading.Thread(target=lambda: answers.append(call(f"{url}/reset")))
        second.start()  # waits for the lock
        time.sleep(0.3)
        threading.Timer(0.3, go.set).start()
    assert done == ["reset"]  # the block ended after the reset under way, not during it
    first.join(5)
    second.join(5)
    assert sorted(code for code, _ in answers) == [200, 409]
    assert "being removed" in str(answers)



def test_a_connection_that_sends_nothing_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    monkeypatch.setattr(control, "IDLE_TIMEOUT", 0.5)
    run = Run()
    with control.serving(control.Controls(run.reset, run.heal, run.document)) as url:
        port = int(url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            began = time.monotonic()
            assert idle.recv(1024) == b""  # closed by the endpoint, not by this side
            assert time.monotonic() - began < 5
        assert call(f"{url}/run", "GET")[0] == 200  # and it goes on answering
