"""Sixteen runs at once on the real swarm of three engines (issue 14's proof): each from its own
connection, as sixteen processes would; every one comes up and serves (its readiness is an HTTP request
inside its task: the rig publishes 5 ports per node, too few for sixteen runs' ports, and outputs from
this machine are tested in test_swarm.py), the tasks spread over all three nodes, and all sixteen go
down in parallel leaving nothing on any node."""

from __future__ import annotations

import concurrent.futures
import os
from collections import Counter
from typing import Any

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect

from .conftest import HELLO, NAME, WEB

pytestmark = pytest.mark.integration
RUNS = 16
#: GET /health inside the task (hello's image has python3-minimal: no urllib.request, no http package)
HEALTH = ("import socket; c = socket.create_connection(('127.0.0.1', 8000), 2); "
          "c.sendall(b'GET /health HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n'); "
          "assert c.recv(64).startswith(b'HTTP/1.1 200'), 'not 200'")
ONE = {"name": NAME, "services": {"web": {**WEB, "ready": {"exec": ["python3", "-c", HEALTH], "timeout": "60s"}}}}


def test_sixteen_runs_at_once_spread_over_the_nodes_and_leave_nothing(backend: Backend, swarm: dict[str, str]) -> None:
    prefix = f"it-sw16-{os.getpid()}"

    def up(i: int) -> str:
        mine = connect(environment={**os.environ, **swarm})
        try:
            return api.up(ONE, name=f"{prefix}-{i}", directory=HELLO, backend=mine).run_id
        finally:
            mine.close()

    runs: list[str] = []
    futures: list[concurrent.futures.Future[str]] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(RUNS) as pool:
            futures = [pool.submit(up, i) for i in range(RUNS)]
            runs = [f.result() for f in futures]  # the first failure fails the test (after the cleanup)
            assert len(set(runs)) == RUNS
            engine: Any = backend.api  # type: ignore[attr-defined]
            hosts = {n["ID"]: n["Description"]["Hostname"] for n in engine.nodes()}
            per_node = Counter(hosts.get(t.get("NodeID", ""), "?")
                               for s in engine.services(filters={"label": [f"{L.BLUEPRINT}={NAME}"]})
                               if s["Spec"]["Labels"].get(L.RUN, "").startswith(prefix)
                               for t in engine.tasks(filters={"service": s["ID"], "desired-state": "running"}))
            assert sum(per_node.values()) == RUNS, per_node
            assert len(per_node) == 3 and min(per_node.values()) >= 2, per_node  # spread, not piled on one node
            list(pool.map(lambda run: api.down([run], backend=backend), runs))
    finally:
        for f in [f for f in futures if f.done() and f.exception() is None]:
            run = f.result()
            if backend.list_resources({L.RUN: run}):
                api.down([run], backend=backend)
    for run in runs:
        assert backend.list_resources({L.RUN: run}) == []
