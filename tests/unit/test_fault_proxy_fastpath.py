"""The fault proxy's fast path (faultproxy/splice.py): a direction with no toxic is forwarded in the kernel,
and a live connection moves in and out of it as toxics come and go, without losing or reordering a byte.
Same harness as test_fault_proxy.py (the proxy as a subprocess on 127.0.0.1, upstream servers in threads)."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from envkit.faults import FaultProxyClient, Latency

from .test_fault_proxy import Make, _connect, _recv, api, proxy, servers

__all__ = ["api", "proxy", "servers"]  # the fixtures, shared with test_fault_proxy.py


def test_toxics_coming_and_going_mid_stream_keep_every_byte_in_order(proxy: Make, api: FaultProxyClient) -> None:
    p = proxy("sink")
    data = os.urandom(12_000_000)
    answer: list[bytes] = []

    def send() -> None:  # paced, so that the stream is still flowing while toxics come and go
        with _connect(p, timeout=30) as sock:
            for at in range(0, len(data), 65536):
                sock.sendall(data[at:at + 65536])
                time.sleep(0.005)
            sock.shutdown(1)
            answer.append(_recv(sock))

    sender = threading.Thread(target=send)
    sender.start()
    switches = 0
    while sender.is_alive() and switches < 8:
        time.sleep(0.05)
        api.add_toxic(p.name, Latency(ms=1), stream="upstream")  # out of the kernel: through the effects
        time.sleep(0.05)
        api.heal(p.name)  # and back
        switches += 1
    sender.join(60)
    assert switches >= 3  # the switches happened while bytes were flowing
    assert answer == [hashlib.sha256(data).hexdigest().encode()]


def test_a_healthy_kept_connection_answers_at_once_both_ways(proxy: Make) -> None:
    p = proxy("echo")
    with _connect(p) as sock:
        for size in (1, 64, 70_000, 300_000):  # small messages and ones larger than a pipe's default
            payload = os.urandom(size)
            sock.sendall(payload)
            assert _recv(sock, size) == payload
