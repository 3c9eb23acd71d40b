"""Connection faults where helpers may not have NET_ADMIN: a proxy that takes over the service's names.

No helper joins the replica's namespace and no rule is added. Instead (docs/faults.md, "Without NET_ADMIN"):

1. a fault-proxy container joins each of the replica's networks under the replica's DNS aliases (the
   service name and the blueprint's aliases), listening on the faulted ports and forwarding to the
   replica by its container name (which the engine's DNS keeps resolving to the replica itself);
2. the replica is disconnected from each network and connected again without those aliases, so peers
   that look the service up by name reach the proxy.

Heal is the reverse: the replica is reconnected with its aliases, the proxy removed. What this cannot
do, unlike the redirect: fault the host's connections through published ports (they reach the replica
directly), connections to the replica's address or container name, one peer only (``peer=``); and the
reconnect resets the replica's live connections and may give it another address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envkit.backends.base import Backend, Capability, ContainerState, NetworkAttachment
from envkit.errors import NotFound, UsageError
from envkit.faults.client import ProxySpec
from envkit.faults.kinds import FaultSpec
from envkit.faults.sidecar import start_proxy

if TYPE_CHECKING:
    from envkit.runs import RunInfo

__all__ = ["apply_front", "heal_front"]


def apply_front(backend: Backend, info: RunInfo, fid: str, spec: FaultSpec, c: ContainerState,
                seed: int) -> dict[str, Any]:
    backend.require(Capability.NETWORK_CONNECT, f"fault {spec.kind!r} without NET_ADMIN (a front proxy)")
    ports = spec.ports or tuple(sorted(k.number for k in c.ports if k.protocol == "tcp"))
    if not ports:
        raise UsageError(f"fault {spec.kind!r} on {c.name}: name the port (port=5432): it publishes none")
    taken = {n: tuple(a for a in c.aliases.get(n, ()) if a != c.name) for n in sorted(c.addresses)}
    taken = {n: a for n, a in taken.items() if a}
    if not taken:
        raise UsageError(f"fault {spec.kind!r} on {c.name} without NET_ADMIN: the replica has no DNS alias "
                         "to take over on any network")
    proxy, client = start_proxy(backend, info.run_id, fid, c.id, seed,
                                networks=tuple(NetworkAttachment(n, a) for n, a in taken.items()))
    moved: list[list[Any]] = []
    try:
        for port in ports:
            client.create(ProxySpec(f"p{port}", f"0.0.0.0:{port}", f"{c.name}:{port}"))
            assert spec.toxic is not None
            for stream in spec.directions:
                client.add_toxic(f"p{port}", spec.toxic, stream=stream, toxicity=spec.probability)  # type: ignore[arg-type]
        for net, aliases in taken.items():
            backend.disconnect_network(c.id, net)
            moved.append([net, list(c.aliases.get(net, ())), c.addresses[net]])
            backend.connect_network(c.id, net, tuple(a for a in c.aliases.get(net, ()) if a not in aliases))
    except BaseException:
        heal_front(backend, {"container": c.id, "front": proxy, "networks": moved}, None)
        raise
    return {"front": proxy, "networks": moved, "ports": list(ports)}


def heal_front(backend: Backend, undo: Mapping[str, Any], state: ContainerState | None) -> None:
    """The front proxy removed, the replica's aliases back on each network."""
    with contextlib.suppress(NotFound):
        backend.remove_container(str(undo["front"]), grace=0)
    cid = str(undo["container"])
    try:
        state = backend.inspect_container(cid)
    except NotFound:
        return
    for net, aliases, _address in undo.get("networks", ()):
        if net in state.addresses:
            backend.disconnect_network(cid, net)
        backend.connect_network(cid, net, tuple(aliases))
