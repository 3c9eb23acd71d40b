"""Host ports chosen by envkit rather than by the engine, so a replica keeps its published ports for
its whole life: Docker picks an ephemeral host port again at every start of a container created
without one, which would make a stopped-and-started (or killed-and-healed) replica answer elsewhere.

The kernel chooses (a socket bound to port 0 on the binding's address, in its ephemeral range), the
socket is closed, and the container is created with that port written in. Between that and the
container's first start another program may take the port: the start then fails with ``PortBusy``,
and the executor creates the container again with new ports (``envkit.handlers``)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import replace

from envkit.backends.types import PortBinding

__all__ = ["choose"]


def choose(ports: tuple[PortBinding, ...]) -> tuple[PortBinding, ...]:
    """``ports`` with a free host port written into each binding without one; a binding whose address
    cannot be bound here (not an address of this host) is left to the engine's choice."""
    held: list[socket.socket] = []
    out: list[PortBinding] = []
    try:
        for p in ports:
            if p.host_port:
                out.append(p)
                continue
            sock = _bound(p.host_ip, p.container.protocol)
            if sock is None:
                out.append(p)
                continue
            held.append(sock)  # held until all are chosen: two bindings never get the same port
            out.append(replace(p, host_port=int(sock.getsockname()[1])))
    finally:
        for sock in held:
            sock.close()
    return tuple(out)


def _bound(host_ip: str, protocol: str) -> socket.socket | None:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host_ip or "0.0.0.0").version == 6 else socket.AF_INET
    except ValueError:
        return None
    sock = socket.socket(family, socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM)
    try:
        sock.bind((host_ip or "0.0.0.0", 0))
    except OSError:
        with contextlib.suppress(OSError):
            sock.close()
        return None
    return sock
