"""API server answers replayed through the official client's REST layer.

``Replay`` stands where urllib3's ``PoolManager`` stands inside ``kubernetes.client.ApiClient``: the
backend, the client's serialisation, authentication headers and response handling all run for real;
only the network is replaced by answers from ``kube_answers/answers.json``. Each expected request
names its method and path (and, optionally, query items); it answers with a stored object, an echo
of the created object (as the API server returns it), or a status. A request nobody expected fails
the test."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import urllib3
from kubernetes import client

__all__ = ["ANSWERS", "Expect", "Replay", "api_client"]

ANSWERS: dict[str, Any] = json.loads((Path(__file__).parent / "kube_answers" / "answers.json").read_text())


@dataclass
class Expect:
    method: str
    path: str
    answer: Any = None  # a name in ANSWERS, an object, or None: echo the request's body
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    times: int = 1  # how many requests it answers (-1: any number)


@dataclass
class Replay:
    expected: list[Expect]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, fields: Any = None, body: Any = None, headers: Any = None,
                timeout: Any = None, preload_content: bool = True, **_: Any) -> urllib3.HTTPResponse:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        sent = json.loads(body) if body else None
        self.requests.append({"method": method, "path": parts.path, "query": query, "body": sent,
                              "headers": dict(headers or {})})
        for e in self.expected:
            if e.times and e.method == method and e.path == parts.path and all(query.get(k) == v for k, v in e.query.items()):
                e.times -= 1 if e.times > 0 else 0
                answer = ANSWERS[e.answer] if isinstance(e.answer, str) else e.answer
                if answer is None and sent is not None:
                    answer = {**sent, "metadata": {**sent.get("metadata", {}), "uid": "00000000-0000-4000-8000-000000000001",
                                                   "resourceVersion": "1", "creationTimestamp": "2026-12-01T10:00:00Z"}}
                payload = answer.encode() if isinstance(answer, str) else json.dumps(answer or {}).encode()
                kind = "text/plain" if isinstance(answer, str) else "application/json"
                return urllib3.HTTPResponse(body=io.BytesIO(payload), status=e.status, headers={"Content-Type": kind},
                                            preload_content=preload_content, reason="OK" if e.status < 300 else "Error")
        raise AssertionError(f"unexpected request {method} {url}")

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def left(self) -> list[str]:
        return [f"{e.method} {e.path}" for e in self.expected if e.times > 0]


def api_client(replay: Replay) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = "https://k8s.test:6443"
    cfg.api_key = {"BearerToken": "t0ken"}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    api = client.ApiClient(cfg)
    api.rest_client.pool_manager = replay
    return api
