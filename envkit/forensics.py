"""Forensics bundles: the files that explain a failure, for a person or a CI system to upload.

    <bundle>/SUMMARY.txt       one screen: the culprit service first, what envkit waited for, its last lines
             error.txt         the failure in full (a failed up)
             services.txt      every container: state, exit code, health, OOM, start time
             probes.txt        readiness checks: what was tried, when, how often, what came back
             seeds.txt         seed steps: when, how long, exit code / HTTP status, output tail, error
             plan.txt          each step's start and duration, then the plan itself
             events.jsonl      every event, one JSON object a line
             services/<container>/logs.txt, inspect.json
             faults.txt        the fault timeline (applied / healed), when faults were applied

``Recorder`` is what ``envkit.api.up`` hands the executor: it keeps the events and the probes' results
(``envkit.probes.ProbeLog``). ``write_failure`` writes a failed up's bundle before rollback removes the
evidence; ``write_live`` one of a live run (``Environment.collect``, ``envkit collect``, the pytest
plugin for a failing test). Secrets are masked everywhere: values of the blueprint's secret-looking
environment keys, and passwords in URLs (``envkit.outputs.mask``). Files are 0600, folders 0700.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, ContainerState
from envkit.blueprint.model import Blueprint, Probe
from envkit.errors import BuildFailed, EnvkitError, SeedFailed, ServiceFailed, UsageError, engine_lost
from envkit.events import Event, EventSink, ignore
from envkit.forensics_redact import Redactor
from envkit.outputs import mask
from envkit.plan import Plan
from envkit.probes import Attempts, Outcome, ProbeLog, check, probe_from_label
from envkit.runs import describe
from envkit.secrets import Secret
from envkit.seed_log import SeedLog, seeds_text, summary_lines
from envkit.steps import SeedStep

__all__ = ["Recorder", "write_failure", "write_live"]

LOG_LIMIT = 20000  # newest lines of one container's log kept in the bundle
SUMMARY_LOG_LINES = 15
EVENT_LIMIT = 50000


class Recorder:
    """An event sink that keeps every event (and passes it on), plus the probes' results, for a bundle."""

    def __init__(self, plan: Plan | None = None, sink: EventSink = ignore) -> None:
        self.plan = plan
        self.probes = ProbeLog()
        self.seeds = SeedLog()
        self.events: list[Event] = []
        self.dropped = 0
        self.began = time.monotonic()
        self._wall = time.time() - self.began  # monotonic -> wall clock
        self._sink = sink
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if len(self.events) < EVENT_LIMIT:
                self.events.append(event)
            else:
                self.dropped += 1
        self._sink(event)

    def wall(self, monotonic: float) -> float:
        return self._wall + monotonic

    def offset(self, wall: float) -> str:
        return f"+{wall - self.wall(self.began):.2f}s"


@dataclasses.dataclass
class _Bundle:
    directory: Path
    redact: Redactor
    files: list[str] = dataclasses.field(default_factory=list)

    def write(self, rel: str, text: str) -> None:
        path = self.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.redact(text))
        self.files.append(rel)


# -- gathering ---------------------------------------------------------------------------------------------
def _containers(backend: Backend, run_id: str) -> list[ContainerState]:
    try:
        return list(describe(backend, run_id).containers)
    except EnvkitError:
        return []  # nothing left, or the engine does not answer: the bundle says what it could


def _logs(backend: Backend, c: ContainerState) -> str:
    try:
        return backend.logs(c.id, tail=LOG_LIMIT)
    except EnvkitError as exc:
        return f"(could not read the logs: {exc})\n"


def _probe_of(c: ContainerState, bp: Blueprint | None, hidden: Iterable[Secret] = ()) -> Probe | None:
    service = c.labels.get(L.SERVICE, "")
    if bp is not None and service in bp.services:
        return bp.services[service].ready
    # From the label, with the secrets it holds as placeholders put back (read back from the run).
    return probe_from_label(c.labels.get(L.PROBE, ""), {h.name: h.value for h in hidden})


def _state_line(c: ContainerState) -> str:
    parts: list[str] = [c.status]
    if c.exit_code is not None:
        parts.append(f"exit code {c.exit_code}")
    if c.health:
        parts.append(f"health {c.health}")
    if c.oom_killed:
        parts.append("killed: out of memory")
    return ", ".join(parts)


def _inspect(c: ContainerState, bp: Blueprint | None) -> str:
    doc: dict[str, Any] = {
        "id": c.id, "name": c.name, "status": c.status, "exit_code": c.exit_code, "health": c.health,
        "oom_killed": c.oom_killed, "started_at": c.started_at, "addresses": dict(c.addresses),
        "ports": {str(k): f"{v.host_ip}:{v.port}" for k, v in sorted(c.ports.items())},
        "labels": {k: mask(k, v) for k, v in sorted(c.labels.items())},
    }
    service = c.labels.get(L.SERVICE, "")
    if bp is not None and service in bp.services:
        spec = dataclasses.asdict(bp.services[service])
        spec["environment"] = [[k, mask(k, v)] for k, v in bp.services[service].environment]
        doc["blueprint_service"] = spec
    return json.dumps(doc, indent=2, default=str) + "\n"


# -- text -------------------------------------------------------------------------------------------------
def _attempt_line(a: Attempts, rec: Recorder | None) -> str:
    when = (f"{rec.offset(a.first)}" + (f" … {rec.offset(a.last)}" if a.count > 1 else "")) if rec else \
        time.strftime("%H:%M:%S", time.localtime(a.first))
    times = f"x{a.count}" if a.count > 1 else "  "
    return f"  {when:<20} {times:>6}  {a.outcome.value:<7}  {a.tried}: {a.detail}"


def _probes_text(log: ProbeLog, order: Sequence[str], rec: Recorder | None) -> str:
    lines = ["readiness checks: when (from the plan's start), how often in a row, the result, what was tried", ""]
    for service in order:
        entries = log.of(service)
        if entries:
            lines.append(f"{service}:")
            lines += [_attempt_line(a, rec) for a in entries]
    if log.dropped:
        lines.append(f"({log.dropped} later results were not kept)")
    return "\n".join(lines) + "\n"


def _plan_text(rec: Recorder) -> str:
    steps: dict[str, dict[str, Any]] = {}
    for e in rec.events:
        if e.kind == "step" and e.step:
            s = steps.setdefault(e.step, {})
            if e.phase == "start":
                s["start"] = e.at
            elif e.phase in ("done", "failed"):
                s["took"], s["result"] = e.duration, "done" if e.phase == "done" else f"failed: {e.detail}"
    lines = [f"{'step':<30} {'action':<8} {'start':>9} {'took':>8}  result"]
    for step in (rec.plan.steps if rec.plan else ()):
        s = steps.get(step.id, {})
        start = f"+{s['start'] - rec.began:.2f}s" if "start" in s else "-"
        took = f"{s['took']:.2f}s" if "took" in s else "-"
        result = s.get("result") or ("stopped (another step failed)" if "start" in s else "not started")
        lines.append(f"{step.id:<30} {step.action:<8} {start:>9} {took:>8}  {result}")
    return "\n".join(lines) + "\n\n" + (rec.plan.text() if rec.plan else "") + "\n"


def _events_text(rec: Recorder) -> str:
    out = []
    for e in rec.events:
        doc = dataclasses.asdict(e)
        doc["at"] = round(rec.wall(e.at), 3)
        doc["t"] = round(e.at - rec.began, 3)
        out.append(json.dumps(doc))
    if rec.dropped:
        out.append(json.dumps({"kind": "note", "message": f"{rec.dropped} later events were not kept"}))
    return "\n".join(out) + ("\n" if out else "")


def _order(containers: Sequence[ContainerState], rec: Recorder | None, bp: Blueprint | None) -> list[str]:
    found = [c.labels.get(L.SERVICE, "?") for c in containers]
    planned = list(dict.fromkeys(s.services[0] for s in rec.plan.steps if s.services)) if rec and rec.plan else []
    declared = list(bp.services) if bp else []
    return list(dict.fromkeys([*planned, *declared, *found]))


def _progress(service: str, rec: Recorder) -> str:
    """How far a service's steps got: "ready", or the steps done and the one that never began."""
    done = [e.action for e in rec.events if e.kind == "step" and e.phase == "done" and e.service == service]
    planned = [s.action for s in (rec.plan.steps if rec.plan else ()) if s.services == (service,)]
    left = [a for a in planned if a not in done]
    if not left:
        return "ready" if "ready" in done else "done"
    return (f"done: {', '.join(done)}; " if done else "") + f"never reached: {', '.join(left)}"


def _summary(run_id: str, head: str, culprit: str | None, why: str, tail: Sequence[str],
             containers: Sequence[ContainerState], order: Sequence[str], log: ProbeLog, rec: Recorder | None,
             bp: Blueprint | None, files: Iterable[str]) -> str:
    by_service: dict[str, list[ContainerState]] = {}
    for c in containers:
        by_service.setdefault(c.labels.get(L.SERVICE, "?"), []).append(c)
    lines = [head, ""]
    if culprit:
        lines.append(f"culprit: service {culprit} — {why}")
        seed = rec.seeds.failed(culprit) if rec else None
        lines += summary_lines(seed) if seed is not None and why.startswith("seed step") else []
        for c in by_service.get(culprit, []):
            lines.append(f"  container {c.name}: {_state_line(c)}")
        svc = bp.services.get(culprit) if bp else None
        probe = svc.ready if svc else _probe_of(by_service[culprit][0], None) if by_service.get(culprit) else None
        lines.append(f"  waited for: {probe.describe() if probe else 'started (or healthy, with a HEALTHCHECK)'}")
        for a in log.of(culprit)[-4:]:
            lines.append(f"  {_attempt_line(a, rec).strip()}")
        if svc and svc.depends_on:
            lines.append("  it starts after: " + ", ".join(f"{d.service} {d.condition}" for d in svc.depends_on))
        waiting = [f"{s.name} ({d.condition})" for s in (bp.services.values() if bp else ()) for d in s.depends_on
                   if d.service == culprit]
        if waiting:
            lines.append("  waiting for it: " + ", ".join(waiting))
        shown = [line for line in tail if line.strip()][-SUMMARY_LOG_LINES:]
        lines.append(f"  last log lines of {culprit}:" if shown else f"  ({culprit} printed no logs)")
        lines += [f"    | {line}" for line in shown]
    else:
        lines.append(f"no service is at fault: {why}")
    others = [s for s in order if s != culprit]
    if others:
        lines += ["", "other services:"]
        for s in others[:15]:
            states = "; ".join(f"{c.name}: {_state_line(c)}" for c in by_service.get(s, [])) or "no container"
            lines.append(f"  {s:<16} {states}" + (f" — {_progress(s, rec)}" if rec else ""))
        if len(others) > 15:
            lines.append(f"  … and {len(others) - 15} more (services.txt)")
    shown_files = {f if not f.startswith("services/") else "services/<container>/" + f.rsplit("/", 1)[1]
                   for f in [*files, "SUMMARY.txt"]}
    lines += ["", "files: " + ", ".join(sorted(shown_files, key=lambda f: (f.count("/"), f)))]
    return "\n".join(lines) + "\n"


# -- writing -------------------------------------------------------------------------------------------------
def _write(backend: Backend, run_id: str, directory: Path, bp: Blueprint | None, rec: Recorder | None,
           head: str, culprit: str | None, why: str, tail: Sequence[str], extra: dict[str, str],
           live_checks: bool, hidden: Iterable[Secret] = ()) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot write the forensics bundle to {directory}: {exc.strerror}") from exc
    containers = _containers(backend, run_id)
    names = {run_id, *(c.name for c in containers), *((bp.name, *bp.services) if bp else ())}
    hidden = tuple(hidden)
    bundle = _Bundle(directory, Redactor(bp, names, hidden))
    order = _order(containers, rec, bp)
    log = rec.probes if rec else ProbeLog()
    if live_checks:  # what each running service's probe says right now
        for c in containers:
            if c.running and c.labels.get(L.KIND, "service") == "service":
                began, at = time.monotonic(), time.time()
                try:
                    outcome, detail = check(backend, c, _probe_of(c, bp, hidden))
                except EnvkitError as exc:
                    outcome, detail = Outcome.NOT_YET, str(exc).splitlines()[0]
                probe = _probe_of(c, bp)
                log.record(c.labels.get(L.SERVICE, "?"), c.name, f"now: {probe.describe() if probe else 'started'}",
                           outcome, detail, at, time.monotonic() - began)
    logs: dict[str, str] = {}
    for c in containers:
        logs[c.name] = _logs(backend, c)
        bundle.write(f"services/{c.name}/logs.txt", logs[c.name])
        bundle.write(f"services/{c.name}/inspect.json", _inspect(c, bp))
    if culprit is None:  # on demand: the first service (in start order) that is down or not ready
        for s in order:
            mine = [c for c in containers if c.labels.get(L.SERVICE) == s]
            bad = [c for c in mine if not c.running and not (c.labels.get(L.KIND) == "job" and c.exit_code == 0)]
            unready = [a for a in log.of(s)[-1:] if a.outcome is not Outcome.READY]
            if bad or unready:
                culprit = s
                why = (f"{bad[0].name} is {_state_line(bad[0])}" if bad
                       else f"not ready: {unready[0].tried}: {unready[0].detail}")
                tail = logs.get((bad or mine)[0].name, "").splitlines() if (bad or mine) else []
                break
    if culprit is not None and not tail:
        mine = [c for c in containers if c.labels.get(L.SERVICE) == culprit]
        tail = logs.get(mine[0].name, "").splitlines() if mine else []
    rows = [f"{'service':<16} {'container':<40} state"]
    rows += [f"{c.labels.get(L.SERVICE, '?'):<16} {c.name:<40} {_state_line(c)}" for c in containers]
    bundle.write("services.txt", "\n".join(rows) + "\n")
    bundle.write("probes.txt", _probes_text(log, order, rec))
    planned = [(st.payload.service, st.payload.index, st.payload.total, st.payload.shown)
               for st in (rec.plan.steps if rec and rec.plan else ()) if isinstance(st.payload, SeedStep)]
    if rec is not None and (planned or rec.seeds.results()):
        bundle.write("seeds.txt", seeds_text(rec.seeds, planned, rec.offset))
    if rec is not None:
        bundle.write("plan.txt", _plan_text(rec))
        bundle.write("events.jsonl", _events_text(rec))
    for rel, text in extra.items():
        bundle.write(rel, text)
    bundle.write("SUMMARY.txt", _summary(run_id, head, culprit, why, tail, containers, order, log, rec, bp,
                                         bundle.files))
    return directory


def write_failure(backend: Backend, rec: Recorder, exc: BaseException, directory: Path,
                  bp: Blueprint | None) -> Path | None:
    """The bundle of a failed up, written before rollback. Never raises: a bundle that cannot be written
    is a note, and the failure itself goes on."""
    run_id = rec.plan.run_id if rec.plan else directory.name
    culprit: str | None = None
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    tail: Sequence[str] = ()
    lost = engine_lost(exc)
    if lost is not None:  # no service is at fault: the engine went away (envkit.engine_lost)
        culprit = ""  # decided: none (None would look for one among the services)
        why = "the connection to the engine was lost: " + (str(lost).splitlines() or [type(lost).__name__])[0]
    elif isinstance(exc, SeedFailed):  # the step first: the service's probe had passed
        step = f"{exc.kind} {exc.file}" if exc.file else exc.kind
        culprit, why = exc.service, f"seed step {exc.index}/{exc.total} ({step}) failed: {exc.reason}"
    elif isinstance(exc, ServiceFailed):
        culprit, why, tail = exc.service, exc.reason, exc.log_tail
    elif isinstance(exc, BuildFailed):
        culprit, why, tail = exc.services[0], f"image build failed ({exc.image}): {exc.reason}", exc.log_tail
    else:
        failed = next((e for e in rec.events if e.kind == "step" and e.phase == "failed"), None)
        if failed is not None and failed.service:
            culprit = failed.service
    head = f"envkit: run {run_id} failed to come up after {time.monotonic() - rec.began:.1f}s"
    try:
        path = _write(backend, run_id, directory, bp, rec, head, culprit, why, tail,
                      {"error.txt": f"{type(exc).__name__}: {exc}\n"}, live_checks=False)
    except (EnvkitError, OSError) as err:
        rec(Event("note", run_id, f"could not write the forensics bundle to {directory}: {err}"))
        return None
    rec(Event("note", run_id, f"forensics bundle: {path / 'SUMMARY.txt'}", target=str(path)))
    return path


def write_live(backend: Backend, run_id: str, directory: Path, *, blueprint: Blueprint | None = None,
               recorder: Recorder | None = None, reason: str = "", faults: str = "",
               hidden: Iterable[Secret] = ()) -> Path:
    """The bundle of a live run. Raises RunNotFound when there is no such run. ``faults``: the fault
    timeline (``Environment.faults()``), written to faults.txt. ``hidden``: the run's secret values read
    back from its containers (``Environment.hidden()``), masked like the blueprint's."""
    describe(backend, run_id)  # RunNotFound first, before any file is written
    if blueprint is None:
        blueprint = _blueprint_of(backend, run_id)
    first, *rest = reason.strip().splitlines() or [""]
    head = f"envkit: run {run_id}, collected {time.strftime('%Y-%m-%d %H:%M:%S')}" + (f": {first}" if first else "")
    shown = [line for line in rest if line.strip()]
    if shown:  # e.g. a failing test's assertion: its last lines (reason.txt has all of it)
        head += "\n" + "\n".join(f"  | {line}" for line in shown[-8:])
    return _write(backend, run_id, directory, blueprint, recorder, head, None, "every service is up and ready",
                  (), {**({"reason.txt": reason + "\n"} if reason else {}),
                       **({"faults.txt": faults.rstrip("\n") + "\n"} if faults.strip() else {})}, live_checks=True,
                  hidden=hidden)


def _blueprint_of(backend: Backend, run_id: str) -> Blueprint | None:
    """The run's blueprint, loaded again from where its labels say it is (for masking and specs), if it loads."""
    from envkit.blueprint import load

    path = describe(backend, run_id).blueprint_path
    try:
        return load(path) if path and Path(path).exists() else None
    except EnvkitError:
        return None
