"""The fault proxy image on the real engine: built from its packaged context (content-hashed tag, reused),
run with no capability as nobody on a network of its own in front of a tiny upstream container, and
driven through its published control port. One latency and one reset fault are measured end to end.

The Docker SDK is used directly: this test must not depend on envkit's backends.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from envkit.faults import CONTEXT, FaultProxyClient, Latency, ResetPeer, context_hash, image_tag

pytestmark = pytest.mark.integration

UPSTREAM_SERVER = '''
import socket, socketserver, threading
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
class Source(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(bytes(range(256)) * 400)
for port, handler in ((7000, Echo), (7001, Source)):
    threading.Thread(target=Server(("0.0.0.0", port), handler).serve_forever).start()
print("upstream listening on 7000 (echo) and 7001 (source)", flush=True)
'''
UPSTREAM_DOCKERFILE = '''FROM debian:bookworm-slim
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
COPY server.py /srv/server.py
USER 65534:65534
CMD ["python3", "-u", "/srv/server.py"]
'''
SOURCE = bytes(range(256)) * 400

# Run inside the upstream container: a client between containers, where no docker-proxy sits in between.
INSIDE_CLIENT = '''
import socket, sys
s = socket.create_connection((sys.argv[1], 81), timeout=5)
got = b""
try:
    while data := s.recv(65536):
        got += data
    print("eof", len(got))
except ConnectionResetError:
    print("reset", len(got), got == bytes(range(256)) * 16)
'''


def _ensure_image(client: Any, context: Path, tag: str, digest: str) -> None:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        client.images.build(path=str(context), tag=tag, rm=True, labels={"io.envkit.context-hash": digest})


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"integration tests need a Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    proxy_tag = image_tag()
    _ensure_image(engine, CONTEXT, proxy_tag, context_hash())
    upstream = tmp_path_factory.mktemp("upstream")
    (upstream / "Dockerfile").write_text(UPSTREAM_DOCKERFILE)
    (upstream / "server.py").write_text(UPSTREAM_SERVER)
    digest = hashlib.sha256((UPSTREAM_DOCKERFILE + "\0" + UPSTREAM_SERVER).encode()).hexdigest()
    upstream_tag = f"envkit/fault-proxy-test-upstream:{digest[:16]}"
    _ensure_image(engine, upstream, upstream_tag, digest)
    return proxy_tag, upstream_tag


def _cleanup(engine: Any, run: str) -> list[str]:
    """Remove everything labelled with the run; return what is still there afterwards."""
    filters = {"label": ["io.envkit.managed=true", f"io.envkit.run={run}"]}
    for container in engine.containers.list(all=True, filters=filters):
        container.remove(force=True)
    for network in engine.networks.list(filters=filters):
        network.remove()
    return ([c.name for c in engine.containers.list(all=True, filters=filters)]
            + [n.name for n in engine.networks.list(filters=filters)])


def _port(container: Any, key: str) -> int:
    return int(container.attrs["NetworkSettings"]["Ports"][key][0]["HostPort"])


def _round_trip(port: int, payload: bytes = b"ping") -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            got += data
        elapsed = time.perf_counter() - start
    assert got == payload
    return elapsed


def _wait_echo(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _round_trip(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_fault_proxy_image_end_to_end(engine: Any, images: tuple[str, str]) -> None:
    proxy_tag, upstream_tag = images
    assert engine.images.get(proxy_tag).labels["io.envkit.context-hash"] == context_hash()
    run = f"faultit-{secrets.token_hex(3)}"
    labels = {"io.envkit.managed": "true", "io.envkit.run": run}
    try:
        network = engine.networks.create(f"envkit-{run}-net", driver="bridge", labels=labels)
        upstream = engine.containers.run(upstream_tag, name=f"envkit-{run}-upstream-1", detach=True, labels=labels,
                                         network=network.name, cap_drop=["ALL"])
        populate = json.dumps([{"name": "echo", "listen": "0.0.0.0:80", "upstream": f"{upstream.name}:7000"},
                               {"name": "source", "listen": "0.0.0.0:81", "upstream": f"{upstream.name}:7001"}])
        proxy = engine.containers.run(
            proxy_tag, ["--control", "0.0.0.0:8474", "--seed", run, "--populate", populate],
            name=f"envkit-{run}-fault-proxy-1", detach=True, labels=labels, network=network.name,
            ports={"8474/tcp": ("127.0.0.1", None), "80/tcp": ("127.0.0.1", None), "81/tcp": ("127.0.0.1", None)},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True,
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},  # ports < 1024 without a capability
        )
        proxy.reload()
        api = FaultProxyClient(port=_port(proxy, "8474/tcp"))
        api.wait_ready(timeout=20)
        echo_port, source_port = _port(proxy, "80/tcp"), _port(proxy, "81/tcp")
        assert proxy.attrs["Config"]["User"] == "65534:65534" and not proxy.attrs["HostConfig"]["Privileged"]
        assert proxy.exec_run(["python3", "-c", "import os; print(os.getuid())"]).output.strip() == b"65534"
        assert api.version()["seed"] == run
        _wait_echo(echo_port)

        # Latency, through the published port: a floor at the configured value and a ceiling above it.
        baseline = statistics.median(_round_trip(echo_port) for _ in range(10))
        assert baseline < 0.05
        api.add_toxic("echo", Latency(ms=250), stream="downstream")
        delayed = [_round_trip(echo_port) for _ in range(5)]
        assert all(0.25 <= t < 0.25 + baseline + 0.15 for t in delayed), (baseline, delayed)
        api.heal("echo")
        payload = secrets.token_bytes(1_000_000)
        assert _round_trip(echo_port, payload) < 2
        assert statistics.median(_round_trip(echo_port) for _ in range(5)) < baseline + 0.02

        # Reset after exactly 4096 bytes. Between containers the client sees a real RST ...
        api.add_toxic("source", ResetPeer(after_bytes=4096))
        inside = upstream.exec_run(["python3", "-c", INSIDE_CLIENT, proxy.name]).output.decode().strip()
        assert inside == "reset 4096 True", inside
        # ... and from the host, through the engine's userland proxy, the stream is cut at exactly 4096 bytes
        # (docker-proxy passes a backend's RST on as a FIN, so the host may see either).
        with socket.create_connection(("127.0.0.1", source_port), timeout=5) as sock:
            got = bytearray()
            try:
                while data := sock.recv(65536):
                    got += data
            except ConnectionResetError:
                pass
        assert bytes(got) == SOURCE[:4096]
        api.heal("source")
        with socket.create_connection(("127.0.0.1", source_port), timeout=5) as sock:
            got = bytearray()
            while data := sock.recv(65536):
                got += data
        assert bytes(got) == SOURCE
    finally:
        left = _cleanup(engine, run)
    assert left == [], f"left behind: {left}"
