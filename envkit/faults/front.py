"""Connection faults where helpers may not have NET_ADMIN: a proxy that takes over the service's names.

No helper joins the replica's namespace and no rule is added. Instead (docs/faults.md, "Without NET_ADMIN"):

1. a private network ``envkit-<run>-fault-<id>-<replica>`` (labelled with the run) is made, and a fault-proxy
   container joins it and each of the replica's networks under the replica's DNS aliases (the service
   name and the blueprint's aliases), listening on the faulted ports and forwarding to the replica by its
   container name, which resolves on the private network only;
2. the replica joins the private network and leaves its own networks (the engine keeps a container's
   host name as an alias wherever it is, so it cannot stay on a network without answering to its
   service name), so peers that look the service up by name reach the proxy.

Heal is the reverse: the replica rejoins its networks with its aliases, the proxy and the private
network go. What this cannot do, unlike the redirect: fault the host's connections through published
ports (they reach the replica directly, on a host port the engine allocates again), reach the replica's
own peers from it while the fault lasts (it is off their networks: fault services that only answer —
a database, a cache, a stub — or use the redirect), fault one peer only (``peer=``); and the move resets
the replica's live connections and may give it other addresses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envkit import labels as L
from envkit.backends.base import Backend, Capability, ContainerState, NetworkAttachment, NetworkSpec
from envkit.errors import NotFound, UsageError
from envkit.faults.client import ProxySpec
from envkit.faults.kinds import FaultSpec
from envkit.faults.sidecar import FAULT, start_proxy

if TYPE_CHECKING:
    from envkit.runs import RunInfo

__all__ = ["apply_front", "behind_front", "heal_front"]


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
    origin = f"envkit-{info.run_id}-fault-{fid}-{c.labels.get(L.REPLICA, '1')}"  # one per replica: healed alone
    backend.create_network(NetworkSpec(origin, ((L.MANAGED, "true"), (L.RUN, info.run_id), (L.ROLE, "fault"),
                                                (FAULT, fid))))
    undo: dict[str, Any] = {"container": c.id, "front": "", "origin": origin, "networks": [], "ports": list(ports)}
    try:
        attach = (*(NetworkAttachment(n, a) for n, a in taken.items()), NetworkAttachment(origin))
        undo["front"], client = start_proxy(backend, info.run_id, fid, c.id, seed, networks=attach)
        for port in ports:
            client.create(ProxySpec(f"p{port}", f"0.0.0.0:{port}", f"{c.name}:{port}"))
            assert spec.toxic is not None
            for stream in spec.directions:
                client.add_toxic(f"p{port}", spec.toxic, stream=stream, toxicity=spec.probability)  # type: ignore[arg-type]
        backend.connect_network(c.id, origin)
        for net in taken:
            undo["networks"].append([net, list(c.aliases.get(net, ())), c.addresses[net]])
            backend.disconnect_network(c.id, net)
    except BaseException:
        heal_front(backend, undo, None)
        raise
    return {k: v for k, v in undo.items() if k != "container"}


def behind_front(backend: Backend, undo: Mapping[str, Any], c: ContainerState) -> None:
    """Put container ``c`` behind the fault's front again: the replica's replacement (a reset's restore path,
    a rebuild) is a new container under the same name, back on the service's networks with its aliases,
    where it answers beside the proxy. It joins the private network (the proxy's upstream, its container
    name, resolves there) and leaves those networks. A front proxy that is gone is refused: the replica
    would then answer on no network at all."""
    backend.inspect_container(str(undo["front"]))  # NotFound: left as it was, for heal to clean up
    if undo["origin"] not in c.addresses:
        backend.connect_network(c.id, str(undo["origin"]))
    for net, _aliases, _address in undo.get("networks", ()):
        if net in c.addresses:
            backend.disconnect_network(c.id, net)


def heal_front(backend: Backend, undo: Mapping[str, Any], state: ContainerState | None) -> None:
    """The replica back on its networks with its aliases; the front proxy and the private network gone."""
    cid = str(undo["container"])
    try:
        state = backend.inspect_container(cid)
    except NotFound:
        state = None
    if state is not None:
        for net, aliases, _address in undo.get("networks", ()):
            if net not in state.addresses:
                backend.connect_network(cid, net, tuple(aliases))
    if undo.get("front"):
        with contextlib.suppress(NotFound):
            backend.remove_container(str(undo["front"]), grace=0)
    if state is not None and undo.get("origin") in state.addresses:
        backend.disconnect_network(cid, str(undo["origin"]))
    for r in backend.list_resources({L.MANAGED: "true", L.ROLE: "fault", FAULT: None}):
        if r.kind == "network" and r.name == undo.get("origin"):
            backend.remove_network(r.id)
