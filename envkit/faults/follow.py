"""Faults that survive a restart of their replica (docs/faults.md, "Restarts").

A replica that restarts — the ``restart`` or ``kill`` fault healed, ``docker restart``, a restart
policy, ``Environment.restart``, a rebuild — gets a new network namespace: the iptables rules and tc
qdiscs of a fault are gone and its proxy sidecar is left in the old one. Each record's undo entry keeps
the replica (service + replica number), its container and its ``StartedAt`` when the fault was put in
place; ``reconcile`` compares them with the engine's and puts what is missing back: a new sidecar with
the same seed, proxies and toxics, the same rules (added only where absent), the same qdisc. A replica
*replaced* by another container (a reset's restore path, a rebuild: same name, new id) gets every fault
put on it again, those the engine holds on a container too (stop, kill, pause, disconnect) and the front
proxy's (the new container goes behind the same proxy again, ``envkit.faults.front``), so a fault
stays in force until it is healed whatever replaced its container. The
record is written again as the next generation (``envkit.faults.records``), so heal undoes what is there
now. Every envkit entry point on a run calls it: ``apply``, ``Environment.faults/status/restart/start``,
``envkit status``, ``envkit fault``; a process that sees another one already re-applying (the sidecar's
fixed name is taken: Conflict) leaves it to that one; one that fails (the engine refuses) leaves the
entry as it was for the next entry point to try again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, ContainerState
from envkit.errors import Conflict, EnvkitError, NotFound
from envkit.faults import records
from envkit.faults.front import behind_front
from envkit.faults.kinds import parse
from envkit.faults.records import FaultRecord
from envkit.faults.rules import rule_script
from envkit.faults.sidecar import digest, run_iptables
from envkit.runs import RunInfo, describe

__all__ = ["moved", "reconcile", "replaced", "undone"]


def _in_namespace(u: Mapping[str, Any]) -> bool:
    return "front" not in u and ("rules" in u or "tc" in u)


def _on_engine(u: Mapping[str, Any]) -> bool:
    """A fault the engine holds on the container itself (stop, kill, pause, disconnect): it survives a
    restart of that container, not its replacement by another one (a reset's restore path, a rebuild)."""
    return "front" not in u and not _in_namespace(u)


def _front(u: Mapping[str, Any]) -> bool:
    """A connection fault without NET_ADMIN (``envkit.faults.front``): the replica moved behind a proxy. It
    survives a restart (the container keeps its networks), not a replacement (the new one is back on them)."""
    return "front" in u


def replaced(u: Mapping[str, Any], current: ContainerState | None) -> bool:
    """Whether the replica of undo entry ``u`` is another container than the fault was put on."""
    return current is not None and bool(u.get("container")) and current.id != u["container"]


def undone(kind: str, u: Mapping[str, Any], current: ContainerState | None) -> bool:
    """Whether a start of the same container since (``envkit start/restart``) undid a fault the engine holds
    on it: a stopped or killed replica runs again, a paused one was restarted unpaused. (A disconnect stays:
    the engine keeps a container's networks across its restarts.)"""
    if current is None or not _on_engine(u) or replaced(u, current) or not current.running:
        return False
    if (current.started_at or "") == u.get("started", ""):
        return False  # the start the fault was put on (a pause leaves StartedAt alone; a restart changes it)
    return kind in ("stop", "kill", "pause")


def moved(u: Mapping[str, Any], current: ContainerState | None) -> bool:
    """Whether the replica of undo entry ``u`` runs in another namespace than the fault was put in."""
    if current is None or not current.running or not _in_namespace(u):
        return False
    return current.id != u.get("container") or (current.started_at or "") != u.get("started", "")


def _current(info: RunInfo, f: FaultRecord, u: Mapping[str, Any]) -> ContainerState | None:
    replicas = info.services.get(f.service, [])
    return next((c for c in replicas if u.get("replica") and c.labels.get(L.REPLICA) == u["replica"]),
                next((c for c in replicas if c.id == u.get("container")), None))


def _again(backend: Backend, info: RunInfo, f: FaultRecord, u: Mapping[str, Any], c: ContainerState) -> dict[str, Any]:
    from envkit.faults.apply import _apply_connection, _apply_one

    if _on_engine(u):  # the same fault on the replica's new container (a stop stops it, a pause pauses it)
        return _apply_one(backend, info, f.id, parse(f.kind, dict(f.params)), c, f.seed, f.seeded,
                          str(u.get("via", "engine")))
    base = {**u, "container": c.id, "name": c.name, "started": c.started_at or ""}
    if _front(u):
        behind_front(backend, u, c)
        return base
    if "sidecar" in u:
        name = f"envkit-{info.run_id}-fault-{f.id}-proxy-{digest(c.id + (c.started_at or ''))}"
        done = _apply_connection(backend, info, f.id, parse(f.kind, dict(f.params)), c, f.seed, name=name, replay=True)
        with contextlib.suppress(NotFound):
            backend.remove_container(str(u["sidecar"]), grace=0)  # left in the old namespace
        return {**base, **done}
    tc = f"{u['tc'][1]}\n{u['tc'][0]}" if "tc" in u else ""  # heal what may be there, then apply
    script = "\n".join([rule_script("+A", u.get("rules", ())), tc]).strip()
    run_iptables(backend, info.run_id, f.id, c.id, script)
    return base


def reconcile(backend: Backend, run_id: str, info: RunInfo | None = None,
              started: Collection[str] = ()) -> list[FaultRecord]:
    """Re-apply the run's faults whose replica restarted since (rules, qdiscs and sidecars: a new network
    namespace; a stop, kill or pause the start undid) or was replaced by a new container (every fault, the
    front proxy's too: a reset's restore path, a rebuild); the records written again. ``started``: the
    containers the caller has just started (``envkit start/restart``): a stop, kill or pause fault on one of
    them is put back. Only there: a heal starts or unpauses the container before its timeline entry is
    written, so another process's reconcile in between would put the fault back just as it is healed."""
    todo = records.active(backend, run_id)
    if not todo:
        return []
    info = info or describe(backend, run_id)
    out = []
    for f in todo:
        undo, changed = [], False
        for u in f.undo:
            c = _current(info, f, u)
            if c is None or not (moved(u, c) or ((_on_engine(u) or _front(u)) and replaced(u, c))
                                 or (c.id in started and undone(f.kind, u, c))):
                undo.append(dict(u))
                continue
            try:
                undo.append(_again(backend, info, f, u, c))
                changed = True
            except Conflict:  # another process is putting it back right now
                undo.append(dict(u))
            except EnvkitError:  # left as it was (heal still cleans up); the next entry point tries again
                undo.append(dict(u))
        if changed:
            again = replace(f, undo=tuple(undo), generation=f.generation + 1)
            records.write(backend, again)
            records.drop(backend, run_id, f.id, below=again.generation)
            out.append(again)
    return out
