"""The containers a fault puts beside a service replica, in its network namespace (docs/faults.md).

- ``run_iptables``: a one-shot helper (``envkit/faults/netns``: debian + iptables) with
  ``network_mode=container:<replica>``, ``cap_drop=ALL`` + ``cap_add=NET_ADMIN``, that runs a shell
  script of iptables commands and is removed; the rules stay in the replica's namespace (and vanish
  with it).
- ``start_proxy``: the fault proxy (``envkit/faults/proxy``) in the replica's namespace, as nobody,
  read-only, no capability; its control API listens on 127.0.0.1 there and is reached through ``exec``
  (``ExecProxyClient``), which every engine offers.

Both images are content-hashed and built once per engine; both carry the run's labels with role ``fault``
and the fault's id, so teardown (by the run's labels) removes whatever a fault left.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path

from envkit import labels as L
from envkit.backends.base import Backend, BuildSpec, Capability, ContainerSpec, NetworkAttachment
from envkit.errors import EngineError, FaultError
from envkit.faults.client import FaultProxyClient
from envkit.faults.image import CONTEXT as PROXY_CONTEXT
from envkit.faults.image import context_hash
from envkit.faults.image import image_tag as proxy_tag

__all__ = ["CONTROL", "NETNS_CONTEXT", "ExecProxyClient", "NetAdminRefused", "ensure_image", "netns_tag", "run_iptables",
           "start_proxy"]

NETNS_CONTEXT = Path(__file__).resolve().parent / "netns"
CONTROL = 18474  # the proxy's control port, on 127.0.0.1 inside the replica's namespace
FAULT = f"{L.NS}.fault"  # the fault's id, on its record and on every helper it started
TARGET = f"{L.NS}.fault-target"  # the replica (container id) a helper sits beside


class NetAdminRefused(FaultError):
    """The engine would not give a helper NET_ADMIN (rootless, a policy): the fallbacks apply."""


_REFUSED = ("permission denied", "operation not permitted")


def netns_tag() -> str:
    return f"envkit/fault-netns:{context_hash(NETNS_CONTEXT)[:16]}"


def ensure_image(backend: Backend, which: str) -> str:
    """The tag of the ``netns`` or ``proxy`` image, built first when the engine lacks it."""
    context, tag = (NETNS_CONTEXT, netns_tag()) if which == "netns" else (PROXY_CONTEXT, proxy_tag())
    if not backend.image_exists(tag):
        lines: list[str] = []
        try:
            backend.build_image(BuildSpec(tag, context, "Dockerfile", (), None,
                                          ((L.CONTEXT_HASH, context_hash(context)), (L.MANAGED, "true"))),
                                lines.append)
        except Exception as exc:
            raise FaultError(f"cannot build the fault {which} image {tag}: {exc}") from exc
    return tag


def _labels(run_id: str, fault_id: str, target: str, role_of: str) -> tuple[tuple[str, str], ...]:
    return ((L.MANAGED, "true"), (L.RUN, run_id), (L.ROLE, "fault"), (FAULT, fault_id), (TARGET, target),
            (f"{L.NS}.fault-helper", role_of))


def run_iptables(backend: Backend, run_id: str, fault_id: str, target: str, script: str,
                 timeout: float = 30.0, check: bool = True) -> tuple[int, str]:
    """Run ``script`` (iptables / tc commands, ``sh -e``) in ``target``'s network namespace; its exit
    code and output. With ``check``, FaultError (naming the replica and the output) when it fails, and
    NetAdminRefused when the engine gave the helper no NET_ADMIN."""
    backend.require(Capability.SHARED_NETNS, "network faults")
    tag = ensure_image(backend, "netns")
    name = f"envkit-{run_id}-fault-{fault_id}-{secrets.token_hex(2)}"
    spec = ContainerSpec(name=name, image=tag, labels=_labels(run_id, fault_id, target, "iptables"), networks=(),
                         command=(script,), user="0:0", network_mode=f"container:{target}",
                         cap_drop=("ALL",), cap_add=("NET_ADMIN",))
    try:
        cid = backend.create_container(spec)
    except EngineError as exc:
        if "cap" in str(exc).lower() or "net_admin" in str(exc).lower():
            raise NetAdminRefused(f"the engine refused a helper with NET_ADMIN: {exc}") from exc
        raise
    try:
        backend.start_container(cid)
        code = backend.wait_container(cid, timeout)
        output = backend.logs(cid).strip()
    finally:
        backend.remove_container(cid, grace=0)
    code = -1 if code is None else code
    if code != 0 and check:
        if any(r in output.lower() for r in _REFUSED):
            raise NetAdminRefused(f"a helper in the namespace of {target[:12]} has no NET_ADMIN (exit {code}; "
                                  f"rootless engines and some policies refuse it): {output[-300:]}")
        raise FaultError(f"iptables in the namespace of {target[:12]} failed (exit {code}): {output[-400:]}")
    return code, output


def start_proxy(backend: Backend, run_id: str, fault_id: str, target: str, seed: int, *, name: str = "",
                networks: tuple[NetworkAttachment, ...] = ()) -> tuple[str, ExecProxyClient]:
    """Start the fault proxy beside ``target`` (in its namespace), or with ``networks`` on the run's
    networks (the no-NET_ADMIN front); its container id and a client for its API (ready). ``name``:
    a fixed name, so that two processes re-applying the same fault collide (Conflict) instead of both
    starting one."""
    if not networks:
        backend.require(Capability.SHARED_NETNS, "connection faults")
    tag = ensure_image(backend, "proxy")
    name = name or f"envkit-{run_id}-fault-{fault_id}-proxy-{secrets.token_hex(2)}"
    spec = ContainerSpec(name=name, image=tag, labels=_labels(run_id, fault_id, target, "front" if networks else "proxy"),
                         networks=networks, command=("--control", f"127.0.0.1:{CONTROL}", "--seed", str(seed)),
                         network_mode=None if networks else f"container:{target}", cap_drop=("ALL",), read_only=True)
    cid = backend.create_container(spec)
    backend.start_container(cid)
    client = ExecProxyClient(backend, cid)
    try:
        client.wait_ready(timeout=15)
    except FaultError:
        backend.remove_container(cid, grace=0)
        raise
    return cid, client


_SEND = """
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
c.request(sys.argv[2], sys.argv[3], body=body, headers={"Content-Type": "application/json"} if body else {})
r = c.getresponse()
sys.stdout.write("%d\\n" % r.status + r.read().decode())
"""


class ExecProxyClient(FaultProxyClient):
    """The proxy's control API reached through ``exec`` in its container (a sidecar publishes no port)."""

    def __init__(self, backend: Backend, container_id: str, port: int = CONTROL, timeout: float = 10.0) -> None:
        super().__init__(port=port, host="127.0.0.1", timeout=timeout)
        self.backend = backend
        self.container_id = container_id

    @property
    def where(self) -> str:
        return f"{self.container_id[:12]} (exec)"

    def _send(self, method: str, path: str, payload: bytes | None) -> tuple[int, bytes]:
        command = ("python3", "-c", _SEND, str(self.port), method, path, *((payload.decode(),) if payload else ()))
        try:
            result = self.backend.exec(self.container_id, command, timeout=self.timeout)
        except Exception as exc:
            raise OSError(str(exc)) from exc
        head, _, rest = result.output.partition("\n")
        if result.exit_code != 0 or not head.strip().isdigit():
            raise OSError(result.output.strip()[-300:] or f"exit {result.exit_code}")
        return int(head), rest.encode()


def helper_labels(labels: Mapping[str, str]) -> tuple[str, str]:
    """(fault id, target replica) of a helper container's labels."""
    return labels.get(FAULT, ""), labels.get(TARGET, "")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
