"""The fault proxy program, run as a subprocess on 127.0.0.1 in front of servers this module starts.

Each toxic is checked by what a client measures: times with a floor and a ceiling, exact byte counts,
the kind of error raised. Upstream servers (threads): echo, sink (replies with the SHA-256 of what it
received once the client half-closes) and source (sends SOURCE bytes at once, then closes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from envkit.errors import FaultError
from envkit.faults import (
    CONTEXT,
    Bandwidth,
    Corrupt,
    FaultProxyClient,
    Latency,
    LimitData,
    ProxyInfo,
    ProxySpec,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    Truncate,
)

SOURCE = 200_000
PATTERN = bytes(range(256)) * (SOURCE // 256 + 1)


class _Handler(socketserver.BaseRequestHandler):
    mode = ""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.mode == "echo":
                while data := sock.recv(65536):
                    sock.sendall(data)
            elif self.mode == "sink":
                digest = hashlib.sha256()
                while data := sock.recv(65536):
                    digest.update(data)
                sock.sendall(digest.hexdigest().encode())
            else:
                sock.sendall(PATTERN[:SOURCE])
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 would drop the SYNs of a burst of connections


def _server(mode: str) -> socketserver.ThreadingTCPServer:
    handler = type(f"{mode}Handler", (_Handler,), {"mode": mode})
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    made = {mode: _server(mode) for mode in ("echo", "sink", "source")}
    yield {mode: s.server_address[1] for mode, s in made.items()}
    for s in made.values():
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxyClient]:
    log = tmp_path_factory.mktemp("fault-proxy") / "proxy.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "faultproxy", "--control", "127.0.0.1:0", "--seed", "unit"],
                                cwd=CONTEXT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        yield FaultProxyClient(port=_control_port(log, proc))
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


def _control_port(log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("fault-proxy control listening on "):
                return int(line.split()[4].rpartition(":")[2])
        time.sleep(0.02)
    raise AssertionError(f"the fault proxy did not start:\n{log.read_text()}")


Make = Callable[[str], ProxyInfo]


@pytest.fixture
def proxy(api: FaultProxyClient, servers: dict[str, int], request: pytest.FixtureRequest) -> Iterator[Make]:
    def make(mode: str) -> ProxyInfo:
        name = f"{request.node.name}-{mode}"
        return api.create(ProxySpec(name, "127.0.0.1:0", f"127.0.0.1:{servers[mode]}"))

    yield make
    for name in api.proxies():
        api.delete(name)


def _connect(p: ProxyInfo, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", p.listen_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv(sock: socket.socket, size: int = sys.maxsize) -> bytes:
    """``size`` bytes, or what came before EOF."""
    got = bytearray()
    while len(got) < size and (data := sock.recv(65536)):
        got += data
    return bytes(got)


def _recv_until(sock: socket.socket, error: type[Exception]) -> bytes:
    """What came before ``error`` was raised (which must happen)."""
    got = bytearray()
    with pytest.raises(error):
        while data := sock.recv(65536):
            got += data
    return bytes(got)


def _sink(p: ProxyInfo, data: bytes) -> bytes:
    """Send ``data``, half-close, return the sink's answer (the SHA-256 hex of what it received)."""
    with _connect(p) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return _recv(sock)


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.perf_counter()
    sock.sendall(payload)
    assert _recv(sock, len(payload)) == payload
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return int(free.getsockname()[1])


def test_plain_forwarding_is_byte_exact_and_passes_half_closes(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("sink")
    data = os.urandom(3_000_000)
    assert _sink(p, data).decode() == hashlib.sha256(data).hexdigest()  # it answers once our FIN got through
    with _connect(proxy("source")) as sock:
        assert _recv(sock) == PATTERN[:SOURCE]
    assert api.proxy(p.name).total_connections == 1
    assert api.version()["seed"] == "unit"


def test_latency_per_direction_with_floor_and_ceiling(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    with _connect(p) as sock:
        assert _round_trip(sock) < 0.15
        api.add_toxic(p.name, Latency(ms=200), stream="downstream")
        assert 0.200 <= _round_trip(sock) < 0.390  # the live connection feels it
        api.add_toxic(p.name, Latency(ms=100), stream="upstream")
        assert 0.300 <= _round_trip(sock) < 0.490
    src = proxy("source")
    api.add_toxic(src.name, Latency(ms=300), stream="upstream")
    start = time.perf_counter()
    with _connect(src) as sock:
        sock.recv(1)
        assert time.perf_counter() - start < 0.2  # the source speaks first: upstream latency does not touch it
    api.add_toxic(src.name, Latency(ms=300), stream="downstream")
    start = time.perf_counter()
    with _connect(src) as sock:
        sock.recv(1)
        assert 0.3 <= time.perf_counter() - start < 0.55


def test_jitter_spreads_round_trips_within_bounds(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Latency(ms=60, jitter_ms=40))
    with _connect(p) as sock:
        times = [_round_trip(sock) for _ in range(8)]
    assert all(0.020 <= t < 0.250 for t in times), times
    assert max(times) - min(times) > 0.02, times


def test_bandwidth_bounds_transfer_time(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("source")
    api.add_toxic(p.name, Bandwidth(kb_per_s=400))  # 200 kB at 400 kB/s: 0.5 s
    start = time.perf_counter()
    with _connect(p) as sock:
        assert _recv(sock) == PATTERN[:SOURCE]
    assert 0.45 <= time.perf_counter() - start < 1.0


def test_reset_peer_at_once_and_after_exact_bytes(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, ResetPeer())
    with _connect(p) as sock, pytest.raises(ConnectionResetError):
        _round_trip(sock)
    src = proxy("source")
    api.add_toxic(src.name, ResetPeer(after_bytes=4096))
    with _connect(src) as sock:
        assert _recv_until(sock, ConnectionResetError) == PATTERN[:4096]


def test_timeout_never_answers_then_closes_and_heals_intact(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Timeout(), stream="upstream")
    with _connect(p, timeout=0.4) as sock:
        sock.sendall(b"hello")
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing within 0.4 s
        api.remove_toxic(p.name, "timeout_upstream")
        assert sock.recv(100) == b"hello"  # held, not dropped: the stalled stream continues after heal
    api.add_toxic(p.name, Timeout(ms=300), stream="upstream")
    with _connect(p) as sock:
        start = time.perf_counter()
        sock.sendall(b"hello")
        assert sock.recv(100) == b""
        assert 0.3 <= time.perf_counter() - start < 0.5
    src = proxy("source")
    api.add_toxic(src.name, Timeout(after_bytes=1000))
    with _connect(src, timeout=0.3) as sock:
        assert _recv_until(sock, TimeoutError) == PATTERN[:1000]


def test_limit_data_gives_exact_bytes_then_eof(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("source")
    api.add_toxic(p.name, LimitData(bytes=1234))
    with _connect(p) as sock:
        assert _recv(sock) == PATTERN[:1234]


def test_slow_close_delays_only_the_end(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("source")
    api.add_toxic(p.name, SlowClose(delay_ms=300))
    with _connect(p) as sock:
        start = time.perf_counter()
        assert _recv(sock, SOURCE) == PATTERN[:SOURCE]
        assert time.perf_counter() - start < 0.2
        assert sock.recv(100) == b""
        assert 0.3 <= time.perf_counter() - start < 0.45


def test_slicer_cuts_into_delayed_pieces(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Slicer(average_size=10, size_variation=3, delay_us=20_000))
    with _connect(p) as sock:
        payload = bytes(range(100))
        sock.sendall(payload)
        start, got, reads = time.perf_counter(), b"", 0
        while len(got) < 100:
            got += sock.recv(4096)
            reads += 1
        elapsed = time.perf_counter() - start
    assert got == payload
    assert reads >= 5 and 0.1 <= elapsed < 0.5, (reads, elapsed)


def test_corrupt_flips_one_bit_per_chosen_byte(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Corrupt(probability=1))
    payload = os.urandom(1000)
    with _connect(p) as sock:
        sock.sendall(payload)
        got = _recv(sock, len(payload))
    assert all(bin(a ^ b).count("1") == 1 for a, b in zip(payload, got, strict=True))
    api.update_toxic(p.name, "corrupt_downstream", Corrupt(probability=0.1))
    payload = bytes(20_000)
    with _connect(p) as sock:
        sock.sendall(payload)
        got = _recv(sock, len(payload))
    flipped = [b for b in got if b]
    assert 1400 < len(flipped) < 2600 and all(bin(b).count("1") == 1 for b in flipped)


def test_truncate_drops_the_tail_at_end_and_on_idle(proxy: Make, api: FaultProxyClient) -> None:
    src = proxy("source")
    api.add_toxic(src.name, Truncate(bytes=10))
    with _connect(src) as sock:
        assert _recv(sock) == PATTERN[:SOURCE - 10]
    p = proxy("echo")  # the echo server never closes: the idle time ends the burst
    api.add_toxic(p.name, Truncate(bytes=10, idle_ms=150))
    with _connect(p) as sock:
        start = time.perf_counter()
        sock.sendall(bytes(range(100)))
        assert _recv(sock) == bytes(range(90))
        assert 0.15 <= time.perf_counter() - start < 0.55


def test_per_direction_independence(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("sink")
    data = os.urandom(5000)
    expected = hashlib.sha256(data).hexdigest().encode()
    api.add_toxic(p.name, Corrupt(probability=1), stream="upstream")
    reply = _sink(p, data)
    assert reply != expected and len(reply) == 64 and int(reply, 16) >= 0  # what the sink got differs; its answer is intact
    api.heal(p.name)
    api.add_toxic(p.name, Corrupt(probability=1), stream="downstream")
    reply = _sink(p, data)
    assert all(bin(a ^ b).count("1") == 1 for a, b in zip(reply, expected, strict=True))  # it got the data intact


def _resets(p: ProxyInfo, count: int) -> list[bool]:
    out = []
    for _ in range(count):
        with _connect(p) as sock:
            try:
                _round_trip(sock)
                out.append(False)
            except ConnectionResetError:
                out.append(True)
    return out


def test_toxicity_zero_one_and_a_seeded_half(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, ResetPeer(), toxicity=0)
    assert _resets(p, 10) == [False] * 10
    api.update_toxic(p.name, "reset_peer_downstream", toxicity=1)
    assert _resets(p, 10) == [True] * 10
    api.delete(p.name)
    p = proxy("echo")
    api.add_toxic(p.name, ResetPeer(), toxicity=0.5)
    first = _resets(p, 24)
    assert 0 < sum(first) < 24
    api.delete(p.name)
    p = proxy("echo")  # same name, same seed: connection n rolls the same way again
    api.add_toxic(p.name, ResetPeer(), toxicity=0.5)
    assert _resets(p, 24) == first


def test_heal_restores_plain_forwarding_on_the_same_port(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Latency(ms=300))
    api.add_toxic(p.name, Bandwidth(kb_per_s=1), stream="upstream")
    with _connect(p) as live:
        assert _round_trip(live) >= 0.3
        healed = api.heal(p.name)
        assert healed.toxics == () and healed.listen_port == p.listen_port
        assert _round_trip(live) < 0.15  # the live connection forwards plainly again
        data = os.urandom(500_000)
        live.sendall(data)
        assert _recv(live, len(data)) == data
    with _connect(p) as sock:
        assert _round_trip(sock) < 0.15


def test_disable_is_an_outage_and_enable_listens_again(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    with _connect(p) as live:
        _round_trip(live)
        api.set_enabled(p.name, False)
        assert live.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        _connect(p)
    api.set_enabled(p.name, True)
    with _connect(p) as sock:
        assert _round_trip(sock) < 0.15


def test_many_concurrent_connections(proxy: Make) -> None:
    p = proxy("echo")

    async def one(i: int) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.listen_port)
        payload = i.to_bytes(4, "big") * 2500
        writer.write(payload)
        await writer.drain()
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        return got == payload

    async def all_of_them() -> list[bool]:
        return await asyncio.gather(*(one(i) for i in range(300)))

    assert all(asyncio.run(all_of_them()))


def test_a_stalled_peer_stalls_the_sender_instead_of_filling_memory(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("echo")
    api.add_toxic(p.name, Timeout(), stream="upstream")
    with _connect(p) as sock:
        sock.setblocking(False)
        sent, chunk = 0, bytes(65536)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.05)
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    break
    assert sent < 24 * 1024 * 1024, sent  # kernel buffers plus at most a few hundred kB in the proxy


def test_api_errors_are_fault_errors(proxy: Make, api: FaultProxyClient, servers: dict[str, int]) -> None:
    p = proxy("echo")
    with pytest.raises(FaultError) as bad_type:
        api._call("POST", f"/proxies/{p.name}/toxics", {"type": "nope"}, what="add", proxy=p.name)
    assert bad_type.value.status == 400 and "unknown toxic type 'nope'" in str(bad_type.value)
    with pytest.raises(FaultError) as taken:
        api.create(ProxySpec(p.name, "127.0.0.1:0", f"127.0.0.1:{servers['echo']}"))
    assert taken.value.status == 409
    with pytest.raises(FaultError) as port_used:
        api.create(ProxySpec("other", f"127.0.0.1:{p.listen_port}", f"127.0.0.1:{servers['echo']}"))
    assert port_used.value.status == 409 and "cannot listen" in str(port_used.value)
    with pytest.raises(FaultError) as missing:
        api.remove_toxic(p.name, "latency_downstream")
    assert missing.value.status == 404 and missing.value.toxic == "latency_downstream"
    with pytest.raises(FaultError) as bad_attr:
        api._call("POST", f"/proxies/{p.name}/toxics", {"type": "latency", "attributes": {"latency": -1}}, what="add")
    assert bad_attr.value.status == 400 and "latency.latency must be a number >= 0" in str(bad_attr.value)
    with pytest.raises(FaultError) as silent:
        FaultProxyClient(port=_free_port()).proxies()
    assert silent.value.status == 0 and "does not answer" in str(silent.value)


def test_a_dead_upstream_looks_like_a_refusal(api: FaultProxyClient) -> None:
    p = api.create(ProxySpec("dead-upstream", "127.0.0.1:0", f"127.0.0.1:{_free_port()}"))
    try:
        with pytest.raises(ConnectionResetError), _connect(p) as sock:  # the reset may even beat connect()
            sock.sendall(b"x")
            sock.recv(10)
    finally:
        api.delete(p.name)
