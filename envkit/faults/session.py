"""Faults from Python: what ``Environment.fault/heal/faults`` are made of.

    with env.fault("payments", "latency", latency="2s"):     # healed on exit, also when the test fails
        ...
    with env.fault("payments-slow"):                           # a scenario of the blueprint's faults:
        ...
    env.fault("db", "pause", duration=5)                       # healed by a timer after 5 s
    env.heal()                                                 # everything, also faults of other processes
    env.faults()                                               # the timeline: applied and healed, in order
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from envkit.errors import BlueprintError, UsageError
from envkit.faults import apply as engine
from envkit.faults.apply import FaultRecord
from envkit.faults.scenarios import Scenario

if TYPE_CHECKING:
    from envkit.api import Environment
    from envkit.backends.base import Backend

__all__ = ["ActiveFault", "TimelineEntry", "fault", "heal", "scenarios", "timeline"]


@dataclass(frozen=True)
class TimelineEntry:
    """One fault of the timeline: applied, and healed (empty: still applied)."""

    record: FaultRecord
    applied_at: str
    healed_at: str = ""

    def __str__(self) -> str:
        end = f" healed {self.healed_at}" if self.healed_at else " (active)"
        r = self.record
        on = f" on {', '.join(r.targets)}" if r.targets else ""
        again = f", re-applied {r.generation}x after restarts" if r.generation else ""
        return f"{self.applied_at} {r.describe()}{on} [{r.id}, seed {r.seed}{again}]{end}"


_timelines: weakref.WeakKeyDictionary[Any, list[TimelineEntry]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _note(env: object, record: FaultRecord) -> None:
    with _lock:
        entries = _timelines.setdefault(env, [])
        for i, e in enumerate(entries):
            if e.record.id == record.id:
                entries[i] = replace(e, healed_at=record.healed_at or e.healed_at)
                return
        entries.append(TimelineEntry(record, record.at, record.healed_at))


class ActiveFault:
    """An applied fault. Heals on ``heal()``, at the end of a ``with`` block, or when its timer ends."""

    def __init__(self, env: Environment, record: FaultRecord, duration: float | None) -> None:
        self.env = env
        self.record = record
        self.duration = duration  # seconds until the timer heals it (None: until healed)
        self._timer: threading.Timer | None = None
        self._healed = bool(record.healed_at)
        self._lock = threading.Lock()
        if duration is not None and not self._healed:
            self._timer = threading.Timer(duration, self.heal)
            self._timer.daemon = True
            self._timer.start()

    def __repr__(self) -> str:
        return f"<ActiveFault {self.record.describe()} ({'healed' if self._healed else 'active'})>"

    @property
    def healed(self) -> bool:
        return self._healed

    def heal(self) -> None:
        with self._lock:
            if self._healed:
                return
            self._healed = True
        if self._timer is not None:
            self._timer.cancel()
        for record in engine.heal(self.env.backend, self.env.run_id, fault_id=self.record.id):
            _note(self.env, record)

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.heal()


def scenarios(env: Environment) -> dict[str, Scenario]:
    """The blueprint's named scenarios: from the Environment's blueprint, else read again from its file."""
    bp = env.blueprint
    if bp is None:
        path = env.info.blueprint_path
        if not path or not Path(path).is_file():
            return {}
        from envkit.blueprint import load
        try:
            bp = load(path)
        except BlueprintError:
            return {}
    return dict(bp.faults)


def resolve(named: Mapping[str, Scenario], service: str, kind: str | None,
            params: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], float | None]:
    """(service, kind, params, duration) of ``fault(service, kind, **params)`` or of ``fault(scenario)``."""
    if kind is not None:
        return service, kind, dict(params), None
    if service not in named:
        known = f"; the blueprint declares {', '.join(sorted(named))}" if named else "; the blueprint declares none"
        raise UsageError(f"no fault scenario {service!r} (name a service and a kind, or a scenario{known})")
    s = named[service]
    return s.service, s.kind, {**s.params, **params}, s.duration


def fault(env: Environment, service: str, kind: str | None, params: Mapping[str, Any], *,
          duration: float | None = None, seed: int | None = None) -> ActiveFault:
    named = scenarios(env) if kind is None else {}
    service, kind, merged, declared = resolve(named, service, kind, params)
    if seed is None and "seed" in merged:
        seed = int(merged.pop("seed"))
    merged.pop("seed", None)
    record = engine.apply(env.backend, env.run_id, service, kind, merged, seed=seed)
    _note(env, record)
    return ActiveFault(env, record, duration if duration is not None else declared)


def heal(env: Environment, service: str | None = None) -> list[FaultRecord]:
    healed = engine.heal(env.backend, env.run_id, service)
    for record in healed:
        _note(env, record)
    return healed


def timeline(env: Environment, backend: Backend | None = None) -> list[TimelineEntry]:
    """The run's fault timeline, applied and healed, by time: from the engine's labels (any process's
    faults, healed ones included), plus what this process saw of a run already gone."""
    from envkit.errors import RunNotFound
    from envkit.faults.follow import reconcile

    backend = backend or env.backend
    with _lock:
        mine = {e.record.id: e for e in _timelines.get(env, ())}
    try:
        reconcile(backend, env.run_id)
        stored = engine.history(backend, env.run_id)
    except RunNotFound:
        stored = []
    out = {**mine, **{f.id: TimelineEntry(f, f.at, f.healed_at) for f in stored}}
    return sorted(out.values(), key=lambda e: e.applied_at)
