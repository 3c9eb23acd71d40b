"""Garbage collection: removing the runs nobody else will remove, by their labels only.

Every resource of a run says whose it is (set at creation, ``envkit.plan``):

    io.envkit.owner        user@host:pid of the process that created the run
    io.envkit.created-at   when (UTC, to the second)
    io.envkit.lifetime     owner: the run ends with that process · detached: it belongs to nobody and
                           ends with `envkit down` or its expiry (`envkit up`, kept and shared runs)
    io.envkit.expires-at   after this (UTC), anyone may remove it; absent: it never expires

``survey()`` judges each run (one generation of it: a run id with one owner and creation time):

- **expired**: its ``expires-at`` has passed → collected;
- **owner gone**: lifetime ``owner``, created on this host, and its owner process is gone — no process
  has that pid, or the one that has it started after the run was created (a reused pid) or belongs
  to another user → collected;
- **never finished**: its claim (``envkit.claim``, removed once ``up`` has succeeded) is still there,
  and its owner is gone — an ``up`` that died, or lost the engine, before it could roll back; a
  detached run too, since nobody was ever handed it → collected;
- anything else is left: a live owner, a detached run before its expiry, a run of another host
  (its processes cannot be seen from here) before its expiry.

Orphans are envkit networks and volumes whose run has no container left and whose owner is not alive
(for another host's run: older than ``ORPHAN_AGE``); a resource with role ``snapshot`` is never one.

``envkit.sweep`` is the cheap version every CLI command runs: expired runs only.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from envkit import labels as L
from envkit.backends.base import Backend, Resource
from envkit.errors import EngineError, UsageError
from envkit.events import Event, EventSink, ignore
from envkit.runs import teardown

__all__ = [
    "DEFAULT_TTL",
    "Generation",
    "Lifetime",
    "Orphan",
    "Process",
    "Survey",
    "collect",
    "expiry",
    "lookup_process",
    "owner_liveness",
    "parse_stamp",
    "parse_ttl",
    "survey",
]

DEFAULT_TTL = 4 * 3600.0  # `envkit up`: a run nobody removes is gone after a working day's afternoon
MAX_TTL = 366 * 86400.0
ORPHAN_AGE = 3600.0  # another host's run without containers is taken for an orphan after this long
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the one format of created-at and expires-at
START_SLACK = 2.0  # seconds: a process's start time read from /proc is exact to about a second

Liveness = Literal["alive", "gone", "unknown"]
Lifetime = Literal["owner", "detached"]


# -- expiry -------------------------------------------------------------------------------------------------
def parse_ttl(text: str) -> float:
    """``4h``, ``30m``, ``90s``, ``1d``, ``1h30m``, a plain number of seconds; ``0`` for no expiry."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(d|h|m|s)", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise UsageError(f"--ttl {text!r}: use a duration such as 4h, 30m, 90s, 1d or 0 (no expiry)")
        scale = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
        seconds = sum(float(n) * scale[u] for n, u in parts)
    if seconds > MAX_TTL:
        raise UsageError(f"--ttl {text!r}: at most 366d (use 0 for no expiry)")
    return seconds


def expiry(created_at: str, ttl: float | None) -> str:
    """The ``expires-at`` label for a run created at ``created_at`` (a ``STAMP_FORMAT`` text); "" = none."""
    created = parse_stamp(created_at)
    if not ttl or created is None:
        return ""
    # Rounded up to the second: a run never expires before its ttl has passed.
    return (created + timedelta(seconds=int(-(-ttl // 1)))).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


# -- owners ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Process:
    """What this host says of a pid: whose it is, and when it started (epoch seconds; None: unknown)."""

    uid: int | None
    started: float | None


ProcessLookup = Callable[[int], "Process | None"]
_OWNER = re.compile(r"^(?P<user>.+)@(?P<host>[^@:]+):(?P<pid>\d+)$")


def lookup_process(pid: int) -> Process | None:
    """The process with this pid on this host, or None when there is none. From /proc on Linux; elsewhere
    only whether it exists (its start time unknown, so a reused pid counts as the owner: never wrongly
    removed)."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        uid = proc.stat().st_uid
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    try:
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks after boot
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started: float | None = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        started = None
    return Process(uid, started)


def _exists(pid: int) -> Process | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it exists
    return Process(None, None)


def _uid_of(user: str) -> int | None:
    if user.isdigit():
        return int(user)  # envkit.api names the owner by uid when the user has no name
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def owner_liveness(owner: str, created_at: str, *, host: str | None = None,
                   lookup: ProcessLookup = lookup_process) -> tuple[Liveness, str]:
    """Whether the process named by an ``owner`` label (``user@host:pid``) still runs, and why we think so."""
    found = _OWNER.match(owner)
    if found is None:
        return "unknown", f"owner {owner!r} is not user@host:pid" if owner else "no owner label"
    here = host if host is not None else socket.gethostname()
    pid = int(found["pid"])
    if found["host"] != here:
        return "unknown", f"owner on another host ({found['host']})"
    proc = lookup(pid)
    if proc is None:
        return "gone", f"owner process {pid} is gone"
    uid = _uid_of(found["user"])
    if uid is not None and proc.uid is not None and proc.uid != uid:
        return "gone", f"owner process {pid} is gone (pid {pid} is another user's process now)"
    created = parse_stamp(created_at)
    if created is not None and proc.started is not None and proc.started > created.timestamp() + 1 + START_SLACK:
        return "gone", f"owner process {pid} is gone (pid {pid} is a process started after the run)"
    return "alive", f"owner process {pid} is alive"


# -- the survey -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Generation:
    """One run as one owner created it, with the verdict on it."""

    run_id: str
    owner: str
    created_at: str
    lifetime: str  # owner | detached ("detached" when the label is missing: never removed for its owner)
    expires_at: str
    resources: tuple[Resource, ...]
    liveness: Liveness
    collect: bool
    reason: str

    @property
    def guard(self) -> dict[str, str]:
        """Labels that single this generation out: a same-named run made since is never touched."""
        return {k: v for k, v in ((L.OWNER, self.owner), (L.CREATED_AT, self.created_at)) if v}

    @property
    def containers(self) -> int:
        return sum(r.kind == "container" for r in self.resources)

    def mine(self, pid: int | None = None) -> bool:
        found = _OWNER.match(self.owner)
        return bool(found and found["host"] == socket.gethostname() and int(found["pid"]) == (pid or os.getpid()))


@dataclass(frozen=True)
class Orphan:
    resource: Resource
    run_id: str
    reason: str


@dataclass(frozen=True)
class Survey:
    runs: tuple[Generation, ...]
    orphans: tuple[Orphan, ...]

    @property
    def collectable(self) -> tuple[Generation, ...]:
        return tuple(g for g in self.runs if g.collect)

    def live(self) -> tuple[Generation, ...]:
        """Runs that may belong to a running process other than this one (``down --all`` leaves them)."""
        return tuple(g for g in self.runs if not g.collect and g.lifetime == "owner" and not g.mine()
                     and g.liveness in ("alive", "unknown"))


def _generation(run_id: str, items: list[Resource], now: datetime, host: str | None,
                lookup: ProcessLookup) -> Generation:
    first = next((r.labels for r in items if r.kind == "container"), items[0].labels)
    owner, created = first.get(L.OWNER, ""), first.get(L.CREATED_AT, "")
    lifetime = first.get(L.LIFETIME, "detached")
    expires = first.get(L.EXPIRES_AT, "")
    liveness, why = owner_liveness(owner, created, host=host, lookup=lookup)
    until = parse_stamp(expires)
    unfinished = any(r.kind == "volume" and r.labels.get(L.ROLE) == "claim" for r in items)
    if until is not None and until <= now:
        collect, reason = True, f"expired at {expires}"
    elif lifetime == "owner" and liveness == "gone":
        collect, reason = True, why
    elif unfinished and liveness == "gone":  # e.g. the engine connection was lost during `up`: nobody's run
        collect, reason = True, f"its `up` never finished (its claim is left) and {why}"
    else:
        collect = False
        if lifetime == "owner" and liveness == "alive":
            reason = why
        else:
            parts = ["detached" if lifetime != "owner" else why]
            parts.append(f"expires at {expires}" if until else
                         ("unreadable expires-at " + repr(expires) if expires else "no expiry"))
            reason = "; ".join(parts)
    return Generation(run_id, owner, created, lifetime, expires, tuple(items), liveness, collect, reason)


def _orphans(g: Generation, now: datetime) -> list[Orphan]:
    """A generation's networks and volumes when no container of it is left and nobody alive holds it."""
    if g.collect or any(r.kind == "container" for r in g.resources):
        return []
    if g.liveness == "alive":
        return []  # e.g. an `up` still building its images: networks come first
    if g.liveness == "unknown":
        created = parse_stamp(g.created_at)
        if created is None or (now - created).total_seconds() < ORPHAN_AGE:
            return []
    return [Orphan(r, g.run_id, f"no container of run {g.run_id} is left ({g.reason})")
            for r in g.resources if r.kind in ("network", "volume") and r.labels.get(L.ROLE) != "snapshot"]


def survey(backend: Backend, *, now: datetime | None = None, host: str | None = None,
           lookup: ProcessLookup = lookup_process) -> Survey:
    """Every envkit run on the engine, judged (one listing, and a look at this host's processes)."""
    now = now or datetime.now(UTC)
    groups: dict[tuple[str, str, str], list[Resource]] = {}
    for r in backend.list_resources({L.MANAGED: "true", L.RUN: None}):
        key = (r.labels[L.RUN], r.labels.get(L.OWNER, ""), r.labels.get(L.CREATED_AT, ""))
        groups.setdefault(key, []).append(r)
    runs = [_generation(key[0], items, now, host, lookup) for key, items in sorted(groups.items())]
    stamped = {key[0] for key in groups if key[1] or key[2]}
    runs = [replace(g, collect=True, reason="helpers (faults) left by a run that is gone")
            if not g.owner and not g.created_at and g.run_id not in stamped and not g.collect else g for g in runs]
    return Survey(tuple(runs), tuple(o for g in runs for o in _orphans(g, now)))


# -- removal ----------------------------------------------------------------------------------------------------
def remove_generations(backend: Backend, generations: Sequence[Generation],
                       on_event: EventSink = ignore) -> dict[str, int]:
    """Tear each down by its labels (guarded by owner and creation time), side by side."""
    counts = {"container": 0, "network": 0, "volume": 0}

    def one(g: Generation) -> dict[str, int]:
        return teardown(backend, [g.run_id], on_event, missing_ok=True, also=g.guard)

    if generations:
        with ThreadPoolExecutor(max_workers=min(8, len(generations)), thread_name_prefix="envkit-gc") as pool:
            for result in pool.map(one, generations):
                for kind, n in result.items():
                    counts[kind] += n
    return counts


def collect(backend: Backend, found: Survey, on_event: EventSink = ignore) -> dict[str, int]:
    """Remove what ``survey`` found collectable, then the orphans. Returns counts by kind."""
    counts = remove_generations(backend, found.collectable, on_event)
    errors: list[str] = []
    for kind in ("network", "volume"):
        for orphan in (o for o in found.orphans if o.resource.kind == kind):
            r = orphan.resource
            try:
                if kind == "network":
                    backend.remove_network(r.id)
                else:
                    backend.remove_volume(r.id)
            except EngineError as exc:
                errors.append(f"{kind} {r.name}: {exc}")
                continue
            counts[kind] += 1
            on_event(Event("removed", orphan.run_id, f"removed orphaned {kind} {r.name}", target=r.name, detail=kind))
    if errors:
        raise EngineError("could not remove orphans: " + "; ".join(errors))
    return counts
