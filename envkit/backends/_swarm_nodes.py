"""What the Swarm backend knows of the nodes behind its manager, from the environment.

A swarm manager's API tells where tasks run (node ids, hostnames, node addresses) but not how this
machine reaches a node's engine or a port a task publishes on it. Two optional variables say so:

``ENVKIT_SWARM_NODES``
    ``HOSTNAME=ENGINE,...``: each node's engine as this machine reaches it (``rig-node2=tcp://127.0.0.1:41234``).
    With it, envkit runs ``exec`` and reads logs on the node where a task runs, copies images to nodes
    that lack them (``docker save`` on the manager, ``load`` on the node: no registry needed) and
    removes volumes on every node. Without it, exec is refused and images must already be on every node
    (or in a registry every node pulls from: a real swarm's way).
``ENVKIT_SWARM_PORTS``
    ``HOSTNAME:PORT=HOST:PORT,...``: where a port published on a node is reached from here (the rig maps
    each node's 30000-30004 to ephemeral 127.0.0.1 ports). Without an entry, the node's own address
    (``Status.Addr``) and the published port are reported: right on a real swarm whose nodes this
    machine can reach.
``ENVKIT_SWARM_PUBLISH``
    ``FIRST-LAST``: the ports services may publish on the nodes (host mode: Swarm has no ingress mesh here,
    so a port must be given). Default 30000-30004, the rig's.
"""

from __future__ import annotations

from collections.abc import Mapping

from envkit.errors import UsageError

__all__ = ["NodeMap", "parse_nodes"]


class NodeMap:
    def __init__(self, engines: Mapping[str, str], ports: Mapping[tuple[str, int], tuple[str, int]],
                 publish: range) -> None:
        self.engines = dict(engines)
        self.ports = dict(ports)
        self.publish = publish

    def reach(self, hostname: str, address: str, port: int) -> tuple[str, int]:
        """Where this machine reaches ``port`` published on node ``hostname`` (whose own address is ``address``)."""
        return self.ports.get((hostname, port), (address, port))


def _pairs(variable: str, text: str) -> list[tuple[str, str]]:
    out = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{variable}: '{item}' is not KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return out


def _host_port(variable: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{variable}: '{text}' is not HOST:PORT")
    return host, int(port)


def parse_nodes(env: Mapping[str, str]) -> NodeMap:
    engines = dict(_pairs("ENVKIT_SWARM_NODES", env.get("ENVKIT_SWARM_NODES", "")))
    ports: dict[tuple[str, int], tuple[str, int]] = {}
    for key, value in _pairs("ENVKIT_SWARM_PORTS", env.get("ENVKIT_SWARM_PORTS", "")):
        ports[_host_port("ENVKIT_SWARM_PORTS", key)] = _host_port("ENVKIT_SWARM_PORTS", value)
    text = env.get("ENVKIT_SWARM_PUBLISH", "30000-30004").strip()
    first, sep, last = text.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise UsageError(f"ENVKIT_SWARM_PUBLISH: '{text}' is not FIRST-LAST")
    low, high = int(first), int(last) if sep else int(first)
    if not 0 < low <= high < 65536:
        raise UsageError(f"ENVKIT_SWARM_PUBLISH: '{text}' is not a port range")
    return NodeMap(engines, ports, range(low, high + 1))
