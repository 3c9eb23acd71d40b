"""Applying faults to a live run and healing them; labels are the truth (docs/faults.md).

Every fault that lasts is recorded on the engine as a volume ``envkit-<run>-fault-<id>`` labelled with
the run, role ``fault``, the service and ``io.envkit.fault-spec`` (JSON: kind, params, when, seed, and
what healing must undo; ``envkit.faults.records``). Another process heals it from those labels alone
(``envkit heal RUN``); a heal leaves the fault's timeline entry. Teardown removes records, timeline,
the proxy sidecars and (with the service's namespace) every rule. The mechanism of each fault —
proxy, iptables, netem, or the fallbacks without NET_ADMIN — is chosen by ``envkit.faults.rules``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, Capability, ContainerState
from envkit.errors import Conflict, FaultError, NotFound, Unsupported, UsageError
from envkit.faults import front, records
from envkit.faults.client import ProxySpec
from envkit.faults.kinds import FaultSpec, parse
from envkit.faults.records import SPEC, FaultRecord
from envkit.faults.rules import (
    choose_via,
    live_script,
    loss_rules,
    net_admin_allowed,
    netem_commands,
    netem_refusal,
    parse_live,
    rule_script,
)
from envkit.faults.sidecar import FAULT, ExecProxyClient, NetAdminRefused, run_iptables, start_proxy
from envkit.runs import RunInfo, describe

__all__ = ["SPEC", "FaultRecord", "apply", "faults", "heal", "history"]

LISTEN_BASE = 15000
_no_net_admin: set[str] = set()  # engines seen refusing NET_ADMIN to helpers (this process)
_no_netem: dict[str, str] = {}  # engines seen without netem: the refusal


def _engine(backend: Backend) -> str:
    return f"{backend.name}:{backend.origin!r}"


def _net_admin(backend: Backend) -> bool:
    return net_admin_allowed(os.environ) and _engine(backend) not in _no_net_admin


def _replicas(info: RunInfo, service: str, replica: int | None) -> list[ContainerState]:
    if service not in info.services:
        raise UsageError(f"run {info.run_id} has no service {service!r}; it has {', '.join(sorted(info.services))}")
    chosen = [c for c in info.services[service] if replica is None or c.labels.get(L.REPLICA) == str(replica)]
    if not chosen:
        raise UsageError(f"service {service!r} of run {info.run_id} has no replica {replica}")
    return chosen


def _peer_addresses(info: RunInfo, peer: str) -> list[str]:
    return sorted({a for c in _replicas(info, peer, None) for a in c.addresses.values()})


def _apply_one(backend: Backend, info: RunInfo, fid: str, spec: FaultSpec, c: ContainerState, seed: int,
               seeded: bool, via: str) -> dict[str, Any]:
    kind, tag = spec.kind, f"-m comment --comment envkit-{fid}"
    base: dict[str, Any] = {"container": c.id, "name": c.name, "replica": c.labels.get(L.REPLICA, ""),
                            "started": c.started_at or "", "via": via}
    if kind in ("stop", "restart"):
        backend.require(Capability.SIGNAL, f"fault {kind!r}")
        backend.stop_container(c.id, spec.grace)
        if kind == "restart":
            backend.start_container(c.id)
        return base
    if kind == "kill":
        backend.require(Capability.SIGNAL, "fault 'kill'")
        backend.kill_container(c.id, spec.signal)
        return base
    if kind == "pause":
        backend.require(Capability.PAUSE, "fault 'pause'")
        backend.pause_container(c.id)
        return base
    if not c.running:
        raise Conflict(f"replica {c.name} is {c.status}: network and connection faults need it running")
    if kind == "disconnect" or via == "disconnect":
        backend.require(Capability.NETWORK_CONNECT, f"fault {kind!r}")
        wanted = {L.network_name(info.run_id, spec.network)} if spec.network else set(c.addresses)
        if kind == "partition":  # no NET_ADMIN: cut it from the networks it shares with the peer
            wanted &= {n for p in _replicas(info, str(spec.peer), None) for n in p.addresses}
        nets = [n for n in sorted(c.addresses) if n in wanted]
        if not nets:
            raise UsageError(f"replica {c.name} is not on network {spec.network or 'shared with ' + str(spec.peer)!r}")
        for n in nets:
            backend.disconnect_network(c.id, n)
        return {**base, "networks": [[n, list(c.aliases.get(n, ())), c.addresses[n]] for n in nets]}
    if via == "netem":
        return {**base, **_apply_netem(backend, info.run_id, fid, spec, c)}
    if via == "front":
        return {**base, **front.apply_front(backend, info, fid, spec, c, seed)}
    if kind in ("partition", "loss"):
        rules: list[str] = []
        if kind == "partition":
            for addr in _peer_addresses(info, str(spec.peer)):
                rules += [f"%OP% INPUT -s {addr} {tag} -j DROP", f"%OP% OUTPUT -d {addr} {tag} -j DROP"]
        else:
            src = "".join(f" -s {a}" for a in _peer_addresses(info, spec.peer)[:1]) if spec.peer else ""
            rules = loss_rules(spec.percent, seed if seeded else None, src, tag, spec.per)
        run_iptables(backend, info.run_id, fid, c.id, rule_script("-A", rules))
        return {**base, "rules": rules}
    return {**base, **_apply_connection(backend, info, fid, spec, c, seed)}


def _apply_netem(backend: Backend, run_id: str, fid: str, spec: FaultSpec, c: ContainerState) -> dict[str, Any]:
    add, undo = netem_commands(spec)
    code, output = run_iptables(backend, run_id, fid, c.id, add, check=False)
    if code != 0:
        run_iptables(backend, run_id, fid, c.id, undo, check=False)  # what a device may have taken
        refusal = netem_refusal(output)
        if refusal:
            _no_netem[_engine(backend)] = refusal
            raise Unsupported(f"fault {spec.kind!r} via=netem on {c.name}: {refusal}")
        if "ermission" in output or "not permitted" in output:
            raise NetAdminRefused(f"tc in the namespace of {c.name} has no NET_ADMIN: {output[-300:]}")
        raise FaultError(f"tc netem in the namespace of {c.name} failed (exit {code}): {output[-400:]}")
    return {"tc": [add, undo]}


def _apply_connection(backend: Backend, info: RunInfo, fid: str, spec: FaultSpec, c: ContainerState,
                      seed: int, name: str = "", replay: bool = False) -> dict[str, Any]:
    ports = spec.ports or tuple(sorted(k.number for k in c.ports if k.protocol == "tcp"))
    if not ports:
        raise UsageError(f"fault {spec.kind!r} on {c.name}: name the port (port=5432): it publishes none")
    for f in faults(backend, info.run_id):
        for u in f.undo:
            busy = [p for p in ports if u.get("container") == c.id and "sidecar" in u and f.id != fid
                    and any(f"--dport {p} " in r for r in u.get("rules", ()))]
            if busy:
                raise Conflict(f"port {busy[0]} of {c.name} already has connection fault {f.id} ({f.describe()}): "
                               f"heal it first (envkit heal {info.run_id} {f.service})")
    address = next(iter(c.addresses.values()), "127.0.0.1")
    sidecar, client = start_proxy(backend, info.run_id, fid, c.id, seed, name=name)
    try:
        src = "".join(f" -s {a}" for a in _peer_addresses(info, spec.peer)) if spec.peer else ""
        rules: list[str] = []
        for i, port in enumerate(ports):
            proxy, listen = f"p{port}", LISTEN_BASE + i
            client.create(ProxySpec(proxy, f"0.0.0.0:{listen}", f"{address}:{port}"))
            assert spec.toxic is not None
            for stream in spec.directions:
                client.add_toxic(proxy, spec.toxic, stream=stream, toxicity=spec.probability)  # type: ignore[arg-type]
            addrs = src.split(" -s ")[1:] or [""]
            rules += [f"-t nat %OP% PREROUTING -p tcp --dport {port}{f' -s {a}' if a else ''} "
                      f"-m comment --comment envkit-{fid} -j REDIRECT --to-ports {listen}" for a in addrs]
        script = rule_script("+A" if replay else "-A", rules)
        _, output = run_iptables(backend, info.run_id, fid, c.id, f"{live_script(ports)}\n{script}")
    except BaseException:
        backend.remove_container(sidecar, grace=0)
        raise
    live = parse_live(output)
    return {"rules": rules, "sidecar": sidecar, **({"live": {str(p): n for p, n in live.items()}} if live else {})}


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
    elif "front" in undo:
        front.heal_front(backend, undo, state)
    elif "networks" in undo:  # disconnect, or a partition without NET_ADMIN
        for net, aliases, _address in undo["networks"]:
            if net not in state.addresses:
                backend.connect_network(cid, net, tuple(aliases))
    elif "rules" in undo or "tc" in undo:
        if "sidecar" in undo:
            with contextlib.suppress(FaultError):  # gone with its namespace: nothing to reset
                ExecProxyClient(backend, str(undo["sidecar"])).reset()  # live connections forward plainly at once
        if state.running:
            script = "\n".join([rule_script("-D", undo.get("rules", ())), *undo.get("tc", ["", ""])[1:]]).strip()
            run_iptables(backend, run_id, fid, cid, script or "true")
        if "sidecar" in undo:
            with contextlib.suppress(NotFound):
                backend.remove_container(str(undo["sidecar"]), grace=0)


def _via(backend: Backend, spec: FaultSpec) -> str:
    return choose_via(spec, _net_admin(backend), _no_netem.get(_engine(backend)))


def apply(backend: Backend, run_id: str, service: str, kind: str, params: Mapping[str, Any] | None = None,
          *, seed: int | None = None, info: RunInfo | None = None) -> FaultRecord:
    """Apply one fault to ``service`` of a live run (all replicas, or ``replica=N``); its record.
    ``restart`` is done at once and leaves no record to heal, only its timeline entry. A seed makes
    the fault's random choices replayable (loss included); without one a random seed is recorded."""
    from envkit.faults.follow import reconcile

    spec = parse(kind, dict(params or {}))
    info = info or describe(backend, run_id)
    chosen = _replicas(info, service, spec.replica)
    if spec.peer:
        _replicas(info, spec.peer, None)
    via = _via(backend, spec)
    reconcile(backend, run_id, info)  # a fault applied before a restart is back before this one is checked
    fid = secrets.token_hex(4)
    seeded, seed = seed is not None, secrets.randbelow(2**31) if seed is None else seed
    at = records.now()
    undo: list[dict[str, Any]] = []
    try:
        for c in chosen:
            try:
                undo.append(_apply_one(backend, info, fid, spec, c, seed, seeded, via))
            except NetAdminRefused:
                if spec.via:
                    raise
                _no_net_admin.add(_engine(backend))  # detected: this and later faults take the fallback
                via = _via(backend, spec)
                undo.append(_apply_one(backend, info, fid, spec, c, seed, seeded, via))
    except BaseException:
        for done in reversed(undo):
            _undo_one(backend, run_id, fid, spec.kind, done)
        raise
    record = FaultRecord(fid, run_id, service, spec.kind, spec.params, at, seed, tuple(undo), seeded=seeded)
    if spec.kind == "restart":
        record = replace(record, healed_at=records.now())
        records.write_log(backend, record)
        return record
    records.write(backend, record)
    return record


def faults(backend: Backend, run_id: str) -> list[FaultRecord]:
    """The faults applied to a run and not healed, oldest first (from the engine's labels)."""
    return records.active(backend, run_id)


def history(backend: Backend, run_id: str) -> list[FaultRecord]:
    """The run's fault timeline, applied and healed, by any process (from the engine's labels)."""
    return records.history(backend, run_id)


def heal(backend: Backend, run_id: str, service: str | None = None, fault_id: str | None = None) -> list[FaultRecord]:
    """Undo the run's faults (of one service, or one fault), newest first; the healed records."""
    healed = []
    for f in reversed(faults(backend, run_id)):
        if (service and f.service != service) or (fault_id and f.id != fault_id):
            continue
        for undo in reversed(f.undo):
            _undo_one(backend, run_id, f.id, f.kind, undo)
        for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id, FAULT: f.id}):
            if r.kind == "container":  # its helpers, those of earlier generations too
                backend.remove_container(r.id, grace=0)
        done = replace(f, healed_at=records.now())
        records.write_log(backend, done)  # the timeline entry first: a reader never loses the fault
        records.drop(backend, run_id, f.id)
        healed.append(done)
    return healed


def wait_and_heal(backend: Backend, record: FaultRecord, seconds: float) -> list[FaultRecord]:
    """A timed fault (``--for``): sleep, then heal exactly this one."""
    time.sleep(seconds)
    return heal(backend, record.run_id, fault_id=record.id)
