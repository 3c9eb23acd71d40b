"""A generic (restore-path) reset meets faults on the real engine: the reset replaces the service's
container, and a fault applied to the service (the front proxy's too) stays in force on the new one until
it is healed; a stopped service keeps the host ports its outputs name, and the address a reset fixed,
through the reset, and starts again when another container took that address meanwhile."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.base import ContainerSpec, NetworkAttachment

from .conftest import resources_of

pytestmark = pytest.mark.integration

# A service that draws a random value into its image's declared volume at its first start and serves it:
# after a reset it serves the captured value again.
DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
VOLUME /data
COPY serve.py /serve.py
CMD ["python3", "/serve.py"]
"""
SERVE = """\
import http.server, os, signal, socketserver, sys
if not os.path.exists("/data/init"):
    open("/data/init", "w").write(os.urandom(6).hex())
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/data/init").read().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""
BLUEPRINT = """\
name: resetfault
services:
  store:
    build: ./store
    snapshot: {reset: restore}
    ports: [8000]
    ready: {tcp: 8000}
  client:  # a peer in the run, which reaches the store by its name
    build: ./store
    command: [python3, -c, "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(10**6)"]
outputs:
  STORE_URL: "http://${services.store.host}:${services.store.ports.8000}/"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api.Environment]:
    folder = tmp_path_factory.mktemp("resetfault")
    (folder / "store").mkdir()
    (folder / "store" / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    (folder / "store" / "serve.py").write_text(SERVE, encoding="utf-8")
    (folder / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    environment = api.up(Path(folder), name="it-reset-faults")
    key = environment.info.replicas("store")[0].labels[L.SNAPSHOT]
    try:
        yield environment
    finally:
        environment.down()
        assert resources_of(environment.backend, environment.run_id) == []
        S.remove(environment.backend, key)


def get(env: api.Environment, timeout: float = 3.0) -> tuple[str, float]:
    began = time.monotonic()
    try:
        with urllib.request.urlopen(env.outputs["STORE_URL"], timeout=timeout) as answer:
            return answer.read().decode(), time.monotonic() - began
    except OSError as exc:
        return f"error: {exc}", time.monotonic() - began


def answer_within(env: api.Environment, seconds: float = 20) -> str:
    """The answer once the service serves again (a heal starts or reconnects it; it does not wait)."""
    deadline = time.monotonic() + seconds
    while (answer := get(env, timeout=1.0)[0]).startswith("error") and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def fault_helpers(env: api.Environment) -> list[str]:
    return [r.name for r in env.backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"}) if r.kind == "container"]


def test_a_connection_fault_is_in_force_right_after_a_reset_and_heal_undoes_it(env: api.Environment) -> None:
    seeded, _ = get(env)
    with env.fault("store", "latency", latency="400ms"):
        old = env.info.replicas("store")[0].id
        env.reset("store")
        assert env.info.replicas("store")[0].id != old  # the restore path: a new container
        answer, took = get(env)  # no other envkit call in between
        assert answer == seeded and took >= 0.35, (answer, took)
        assert len(fault_helpers(env)) == 1  # the sidecar left in the old namespace is gone
        (entry,) = [e for e in env.faults() if not e.healed_at]
        assert entry.record.undo[0]["container"] == env.info.replicas("store")[0].id
    answer, took = get(env)
    assert answer == seeded and fault_helpers(env) == []


def test_pause_and_disconnect_stay_in_force_through_a_reset_until_healed(env: api.Environment) -> None:
    seeded, _ = get(env)
    with env.fault("store", "pause"):
        env.reset("store")
        assert env.info.replicas("store")[0].status == "paused"  # the record tells the truth
        assert get(env, timeout=1.0)[0].startswith("error")
    assert answer_within(env) == seeded
    with env.fault("store", "disconnect"):
        env.reset("store")
        assert env.info.replicas("store")[0].addresses == {}
    assert env.refresh().replicas("store")[0].addresses and answer_within(env) == seeded


def test_a_stopped_service_keeps_its_host_ports_through_a_reset(env: api.Environment) -> None:
    seeded, _ = get(env)
    port = env.info.replicas("store")[0].ports
    env.stop("store")
    env.reset("store")  # made again from the snapshot, and started
    assert env.refresh().replicas("store")[0].ports == port and get(env)[0] == seeded
    with env.fault("store", "stop"):
        env.reset("store")
        assert env.info.replicas("store")[0].status == "exited"  # still stopped by the fault
    assert env.refresh().replicas("store")[0].ports == port
    assert answer_within(env) == seeded  # the outputs still name the service


PEER_GET = """\
import sys, time, urllib.request
began = time.monotonic()
try:
    print(urllib.request.urlopen("http://store:8000/", timeout=3).read().decode(), time.monotonic() - began)
except OSError as exc:
    print("error:", str(exc).replace(" ", "_"), time.monotonic() - began)
"""


def peer_get(env: api.Environment) -> tuple[str, float]:
    """What the client gets from http://store:8000/ (by the service's name, as peers connect), and how long it took."""
    answer, took = env.exec("client", ["python3", "-c", PEER_GET]).output.split()
    return answer, float(took)


def test_a_front_proxy_fault_stays_in_force_through_a_reset(env: api.Environment) -> None:
    # The front (the fallback without NET_ADMIN) moves the replica behind a proxy that holds its name: the
    # reset's new container came back on the service's networks beside the proxy, both answering to
    # "store", so peers went round the fault half the time while the record still called it active.
    seeded, _ = get(env)
    with env.fault("store", "latency", latency="400ms", via="front") as fault:
        origin = fault.record.undo[0]["origin"]
        assert set(env.refresh().replicas("store")[0].addresses) == {origin}
        assert peer_get(env)[1] >= 0.35
        old = env.info.replicas("store")[0].id
        env.reset("store")
        new = env.refresh().replicas("store")[0]
        assert new.id != old and set(new.addresses) == {origin}  # behind the front again
        for _ in range(4):  # every connection by name goes through the proxy
            answer, took = peer_get(env)
            assert answer == seeded and took >= 0.35, (answer, took)
        (entry,) = [e for e in env.faults() if not e.healed_at]
        assert entry.record.undo[0]["container"] == new.id  # so heal puts that container back
    after = env.refresh().replicas("store")[0]
    assert origin not in after.addresses and after.aliases[L.network_name(env.run_id, "default")]
    answer, took = peer_get(env)
    assert answer == seeded and took < 0.35 and fault_helpers(env) == []
    assert not [r.name for r in env.backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"}) if r.kind == "network"]


def test_a_service_reset_once_starts_again_when_its_address_was_taken_while_it_was_stopped(
        env: api.Environment) -> None:
    # A reset makes the new container with the old one's address, fixed: the engine then reserves it for that
    # container only while it runs. Stopped, another container may take it, and the engine refused to start
    # the service again ("Address already in use", which envkit took for a busy host port).
    seeded, _ = get(env)
    env.reset("store")
    net = L.network_name(env.run_id, "default")
    address = env.refresh().replicas("store")[0].addresses[net]
    env.stop("store")
    squatter = env.backend.create_container(ContainerSpec(  # labelled as a fault's helper: no replica
        f"envkit-{env.run_id}-squatter", env.info.replicas("client")[0].labels[L.IMAGE],
        ((L.MANAGED, "true"), (L.RUN, env.run_id), (L.ROLE, "fault")), (NetworkAttachment(net, (), address),),
        command=("sleep", "300")))
    try:
        env.backend.start_container(squatter)  # what joins the network meanwhile: a front proxy, a helper...
        env.start("store")
        moved = env.refresh().replicas("store")[0]
        assert moved.running and moved.addresses[net] != address and moved.aliases[net]
        assert peer_get(env)[0] == seeded  # peers find it by its name
    finally:
        env.backend.remove_container(squatter, grace=0)


def test_a_stopped_service_keeps_the_address_a_reset_fixed_through_the_next_reset(env: api.Environment) -> None:
    # A stopped container has no address, but one made with a fixed address keeps it in its configuration: a
    # reset of it while stopped made the new container with none, so it took whichever was free first
    # (another stopped service's, reserved by a reset of its own).
    seeded, _ = get(env)
    env.reset("store")
    net = L.network_name(env.run_id, "default")
    address = env.refresh().replicas("store")[0].addresses[net]
    env.stop("store")
    assert env.refresh().replicas("store")[0].fixed == {net: address}
    env.reset("store")  # made again from the snapshot, and started
    again = env.refresh().replicas("store")[0]
    assert again.addresses[net] == address and again.fixed == {net: address} and get(env)[0] == seeded
    assert peer_get(env)[0] == seeded  # and by its name
