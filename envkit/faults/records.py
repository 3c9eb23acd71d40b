"""Where faults are recorded: labelled volumes on the engine, removed with the run (docs/faults.md).

    envkit-<run>-fault-<id>          role fault      an applied fault: kind, params, seed, what to undo
    envkit-<run>-fault-<id>-g<N>     role fault      the same fault re-applied after its replica restarted
    envkit-<run>-fault-<id>-log      role fault-log  the timeline entry of a healed (or one-shot) fault

Volume labels cannot change, so a re-applied fault is written as a new generation before the older one is
removed (a reader in between sees both and keeps the newest), and a heal writes the ``-log`` entry before
the record goes. Any process reads the whole timeline from the labels: ``envkit status``,
``Environment.faults()`` of another process, the forensics bundle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, VolumeSpec
from envkit.faults.sidecar import FAULT

__all__ = ["GEN", "HEALED", "LOG_ROLE", "SPEC", "FaultRecord", "active", "drop", "history", "now", "write",
           "write_log"]

SPEC = f"{L.NS}.fault-spec"
GEN = f"{L.NS}.fault-gen"
HEALED = f"{L.NS}.fault-healed"
LOG_ROLE = "fault-log"


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
    generation: int = 0  # how many times it was re-applied after its replica restarted
    seeded: bool = True  # the seed was given (False: chosen at random; kernel-random loss is not replayable)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} {self.service}" + (f" {args}" if args else "")

    def live_note(self) -> str:
        """What a connection fault could not reach: the connections already open to a faulted port when it was
        applied (a client's pool), which the redirect leaves alone; empty when there were none."""
        open_ = [f"{u.get('name', '?')}:{port} ({n})" for u in self.undo for port, n in (u.get("live") or {}).items()]
        if not open_:
            return ""
        return (f"connections already open when fault {self.id} was applied are not faulted: {', '.join(open_)}; "
                f"only new ones go through the fault proxy: make the client reconnect (restart it, or drop its "
                f"connection pool)")

    @property
    def targets(self) -> tuple[str, ...]:
        """The replicas it was applied to (container names)."""
        return tuple(str(u.get("name", "")) for u in self.undo if u.get("name"))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _name(run_id: str, fid: str, suffix: str = "") -> str:
    return f"envkit-{run_id}-fault-{fid}{suffix}"


def _body(r: FaultRecord) -> str:
    return json.dumps({"kind": r.kind, "params": r.params, "at": r.at, "seed": r.seed, "seeded": r.seeded,
                       "undo": r.undo, "healed_at": r.healed_at}, separators=(",", ":"), default=str)


def _labels(r: FaultRecord, role: str) -> tuple[tuple[str, str], ...]:
    return ((L.MANAGED, "true"), (L.RUN, r.run_id), (L.ROLE, role), (L.SERVICE, r.service), (FAULT, r.id),
            (SPEC, _body(r)))


def write(backend: Backend, record: FaultRecord) -> None:
    """Record an applied fault (generation N > 0: a re-application, beside the older one until ``drop``)."""
    suffix = f"-g{record.generation}" if record.generation else ""
    backend.create_volume(VolumeSpec(_name(record.run_id, record.id, suffix),
                                     (*_labels(record, "fault"), (GEN, str(record.generation)))))


def write_log(backend: Backend, record: FaultRecord) -> None:
    """The timeline entry of a healed fault (``record.healed_at`` set); writing it twice is harmless."""
    backend.create_volume(VolumeSpec(_name(record.run_id, record.id, "-log"),
                                     (*_labels(record, LOG_ROLE), (HEALED, record.healed_at),
                                      (GEN, str(record.generation)))))


def _read(run_id: str, labels: Mapping[str, str]) -> FaultRecord:
    d = json.loads(labels[SPEC])
    return FaultRecord(labels.get(FAULT, ""), run_id, labels.get(L.SERVICE, ""), d["kind"], d["params"], d["at"],
                       int(d["seed"]), tuple(d["undo"]), labels.get(HEALED, d.get("healed_at", "")),
                       int(labels.get(GEN, "0") or 0), bool(d.get("seeded", True)))


def _all(backend: Backend, run_id: str) -> tuple[dict[str, FaultRecord], dict[str, FaultRecord]]:
    applied: dict[str, FaultRecord] = {}
    healed: dict[str, FaultRecord] = {}
    for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id, FAULT: None}):
        if r.kind != "volume" or SPEC not in r.labels:
            continue
        rec = _read(run_id, r.labels)
        if r.labels.get(L.ROLE) == LOG_ROLE:
            healed[rec.id] = rec
        elif r.labels.get(L.ROLE) == "fault" and (rec.id not in applied or applied[rec.id].generation < rec.generation):
            applied[rec.id] = rec
    return applied, healed


def active(backend: Backend, run_id: str) -> list[FaultRecord]:
    """The faults applied and not healed, oldest first, each at its newest generation."""
    applied, healed = _all(backend, run_id)
    return sorted((f for f in applied.values() if f.id not in healed), key=lambda f: f.at)


def history(backend: Backend, run_id: str) -> list[FaultRecord]:
    """Every fault of the run, applied or healed, by time (healed ones with ``healed_at``)."""
    applied, healed = _all(backend, run_id)
    return sorted({**applied, **healed}.values(), key=lambda f: f.at)


def drop(backend: Backend, run_id: str, fid: str, below: int | None = None) -> None:
    """Remove the fault's records (only generations below ``below``, when given)."""
    for r in backend.list_resources({L.MANAGED: "true", L.RUN: run_id, FAULT: fid, L.ROLE: "fault"}):
        if r.kind == "volume" and (below is None or int(r.labels.get(GEN, "0") or 0) < below):
            backend.remove_volume(r.name)
