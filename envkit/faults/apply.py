"""Applying faults to a live run and healing them; labels are the truth (docs/faults.md).

Every fault that lasts is recorded on the engine as a volume ``envkit-<run>-fault-<id>`` labelled with
the run, role ``fault``, the service and ``io.envkit.fault-spec`` (JSON: kind, params, when, seed, and
what healing must undo). Another process heals it from those labels alone (``envkit heal RUN``);
teardown removes the record, the proxy sidecars and (with the service's namespace) every rule.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, Capability, ContainerState, VolumeSpec
from envkit.errors import Conflict, FaultError, NotFound, UsageError
from envkit.faults.client import ProxySpec
from envkit.faults.kinds import FaultSpec, parse
from envkit.faults.sidecar import FAULT, ExecProxyClient, run_iptables, start_proxy
from envkit.runs import RunInfo, describe

__all__ = ["FaultRecord", "apply", "faults", "heal"]

SPEC = f"{L.NS}.fault-spec"
LISTEN_BASE = 15000


@dataclass(frozen=True)
class FaultRecord:
    id: str
    run_id: str
    service: str
    kind: str
    params: Mapping[str, Any]
    at: str  # UTC, ISO 8601
    seed: int
    undo: tuple[Mapping[str, Any], ...]  # one entry per replica touched
    healed_at: str = ""

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} {self.service}" + (f" {args}" if args else "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _replicas(info: RunInfo, service: str, replica: int | None) -> list[ContainerState]:
    if service not in info.services:
        raise UsageError(f"run {info.run_id} has no service {service!r}; it has {', '.join(sorted(info.services))}")
    chosen = [c for c in info.services[service] if replica is None or c.labels.get(L.REPLICA) == str(replica)]
    if not chosen:
        raise UsageError(f"service {service!r} of run {info.run_id} has no replica {replica}")
    return chosen


def _rule_script(op: str, rules: Sequence[str]) -> str:
    if op == "-A":
        return "\n".join(f"iptables {r.replace('%OP%', '-A')}" for r in rules)
    # heal: delete what is still there (a restarted replica has a fresh namespace without them)
    return "\n".join(f"if iptables {r.replace('%OP%', '-C')} 2>/dev/null; then iptables {r.replace('%OP%', '-D')}; fi"
                     for r in rules)


def _peer_addresses(info: RunInfo, peer: str) -> list[str]:
    return sorted({a for c in _replicas(info, peer, None) for a in c.addresses.values()})


def _apply_one(backend: Backend, info: RunInfo, fid: str, spec: FaultSpec, c: ContainerState,
               seed: int) -> dict[str, Any]:
    kind, tag = spec.kind, f"-m comment --comment envkit-{fid}"
    if kind in ("stop", "restart"):
        backend.require(Capability.SIGNAL, f"fault {kind!r}")
        backend.stop_container(c.id, spec.grace)
        if kind == "restart":
            backend.start_container(c.id)
        return {"container": c.id}
    if kind == "kill":
        backend.require(Capability.SIGNAL, "fault 'kill'")
        backend.kill_container(c.id, spec.signal)
        return {"container": c.id}
    if kind == "pause":
        backend.require(Capability.PAUSE, "fault 'pause'")
        backend.pause_container(c.id)
        return {"container": c.id}
    if not c.running:
        raise Conflict(f"replica {c.name} is {c.status}: network and connection faults need it running")
    if kind == "disconnect":
        backend.require(Capability.NETWORK_CONNECT, "fault 'disconnect'")
        wanted = L.network_name(info.run_id, spec.network) if spec.network else None
        nets = [n for n in sorted(c.addresses) if wanted in (None, n)]
        if not nets:
            raise UsageError(f"replica {c.name} is not on network {spec.network!r}")
        for n in nets:
            backend.disconnect_network(c.id, n)
        return {"container": c.id, "networks": [[n, list(c.aliases.get(n, ())), c.addresses[n]] for n in nets]}
    if kind in ("partition", "loss"):
        rules: list[str] = []
        if kind == "partition":
            for addr in _peer_addresses(info, str(spec.peer)):
                rules += [f"%OP% INPUT -s {addr} {tag} -j DROP", f"%OP% OUTPUT -d {addr} {tag} -j DROP"]
        else:
            src = "".join(f" -s {a}" for a in _peer_addresses(info, spec.peer)[:1]) if spec.peer else ""
            rules.append(f"%OP% INPUT{src} -m statistic --mode random --probability {spec.percent / 100:.4f} {tag} -j DROP")
        run_iptables(backend, info.run_id, fid, c.id, _rule_script("-A", rules))
        return {"container": c.id, "rules": rules}
    return _apply_connection(backend, info, fid, spec, c, seed)


def _apply_connection(backend: Backend, info: RunInfo, fid: str, spec: FaultSpec, c: ContainerState,
                      seed: int) -> dict[str, Any]:
    ports = spec.ports or tuple(sorted(k.number for k in c.ports if k.protocol == "tcp"))
    if not ports:
        raise UsageError(f"fault {spec.kind!r} on {c.name}: name the port (port=5432): it publishes none")
    for f in faults(backend, info.run_id):
        for u in f.undo:
            busy = [p for p in ports if u.get("container") == c.id and "sidecar" in u
                    and any(f"--dport {p} " in r for r in u.get("rules", ()))]
            if busy:
                raise Conflict(f"port {busy[0]} of {c.name} already has connection fault {f.id} ({f.describe()}): "
                               f"heal it first (envkit heal {info.run_id} {f.service})")
    address = next(iter(c.addresses.values()), "127.0.0.1")
    sidecar, client = start_proxy(backend, info.run_id, fid, c.id, seed)
    try:
        src = "".join(f" -s {a}" for a in _peer_addresses(info, spec.peer)) if spec.peer else ""
        rules: list[str] = []
        for i, port in enumerate(ports):
            name, listen = f"p{port}", LISTEN_BASE + i
            client.create(ProxySpec(name, f"0.0.0.0:{listen}", f"{address}:{port}"))
            assert spec.toxic is not None
            for stream in spec.directions:
                client.add_toxic(name, spec.toxic, stream=stream, toxicity=spec.probability)  # type: ignore[arg-type]
            addrs = src.split(" -s ")[1:] or [""]
            rules += [f"-t nat %OP% PREROUTING -p tcp --dport {port}{f' -s {a}' if a else ''} "
                      f"-m comment --comment envkit-{fid} -j REDIRECT --to-ports {listen}" for a in addrs]
        run_iptables(backend, info.run_id, fid, c.id, _rule_script("-A", rules))
    except BaseException:
        backend.remove_container(sidecar, grace=0)
        raise
    return {"container": c.id, "rules": rules, "sidecar": sidecar}


def _undo_one(backend: Backend, run_id: str, fid: str, kind: str, undo: Mapping[str, Any]) -> None:
    cid = str(undo["container"])
    try:
        state = backend.inspect_container(cid)
    except NotFound:
        return  # the replica is gone (rebuilt, removed): nothing of the fault is left on it
    if kind in ("stop", "kill"):
        if not state.running:
            backend.start_container(cid)
    elif kind == "pause":
        if state.status == "paused":
            backend.unpause_container(cid)
    elif kind == "disconnect":
        for net, aliases, _address in undo["networks"]:
            if net not in state.addresses:
                backend.connect_network(cid, net, tuple(aliases))
    elif "rules" in undo:
        if "sidecar" in undo:
            with contextlib.suppress(FaultError):  # gone with its namespace: nothing to reset
                ExecProxyClient(backend, str(undo["sidecar"])).reset()  # live connections forward plainly at once
        if state.running:
            run_iptables(backend, run_id, fid, cid, _rule_script("-D", undo["rules"]))
        if "sidecar" in undo:
            with contextlib.suppress(NotFound):
                backend.remove_container(str(undo["sidecar"]), grace=0)


def apply(backend: Backend, run_id: str, service: str, kind: str, params: Mapping[str, Any] | None = None,
          *, seed: int | None = None, info: RunInfo | None = None) -> FaultRecord:
    """Apply one fault to ``service`` of a live run (all replicas, or ``replica=N``); its record.
    ``restart`` is done at once and leaves no record to heal."""
    spec = parse(kind, dict(params or {}))
    info = info or describe(backend, run_id)
    chosen = _replicas(info, service, spec.replica)
    if spec.peer:
        _replicas(info, spec.peer, None)
    fid = secrets.token_hex(4)
    seed = secrets.randbelow(2**31) if seed is None else seed
    at = _now()
    undo: list[dict[str, Any]] = []
    try:
        for c in chosen:
            undo.append(_apply_one(backend, info, fid, spec, c, seed))
    except BaseException:
        for done in reversed(undo):
            _undo_one(backend, run_id, fid, spec.kind, done)
        raise
    record = FaultRecord(fid, run_id, service, spec.kind, spec.params, at, seed, tuple(undo))
    if spec.kind == "restart":
        return FaultRecord(**{**record.__dict__, "healed_at": _now()})
    body = json.dumps({"kind": spec.kind, "params": spec.params, "at": at, "seed": seed, "undo": undo},
                      separators=(",", ":"), default=str)
    backend.create_volume(VolumeSpec(f"envkit-{run_id}-fault-{fid}", (
        (L.MANAGED, "true"), (L.RUN, run_id), (L.ROLE, "fault"), (L.SERVICE, service), (FAULT, fid), (SPEC, body))))
    return record


def faults(backend: Backend, run_id: str) -> list[FaultRecord]:
    """The faults applied to a run and not healed, oldest first (from the engine's labels)."""
    out = []
    for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id, L.ROLE: "fault"}):
        if r.kind != "volume" or SPEC not in r.labels:
            continue
        d = json.loads(r.labels[SPEC])
        out.append(FaultRecord(r.labels.get(FAULT, ""), run_id, r.labels.get(L.SERVICE, ""), d["kind"], d["params"],
                               d["at"], int(d["seed"]), tuple(d["undo"])))
    return sorted(out, key=lambda f: f.at)


def heal(backend: Backend, run_id: str, service: str | None = None, fault_id: str | None = None) -> list[FaultRecord]:
    """Undo the run's faults (of one service, or one fault), newest first; the healed records."""
    healed = []
    for f in reversed(faults(backend, run_id)):
        if (service and f.service != service) or (fault_id and f.id != fault_id):
            continue
        for undo in reversed(f.undo):
            _undo_one(backend, run_id, f.id, f.kind, undo)
        for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id, FAULT: f.id}):
            if r.kind == "container":
                backend.remove_container(r.id, grace=0)
        backend.remove_volume(f"envkit-{run_id}-fault-{f.id}")
        healed.append(FaultRecord(**{**f.__dict__, "healed_at": _now()}))
    return healed


def wait_and_heal(backend: Backend, record: FaultRecord, seconds: float) -> list[FaultRecord]:
    """A timed fault (``--for``): sleep, then heal exactly this one."""
    time.sleep(seconds)
    return heal(backend, record.run_id, fault_id=record.id)
