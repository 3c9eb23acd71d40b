"""The executor runs a plan's steps, each as soon as the steps it waits for are done, in parallel.

It decides nothing: what to do and in which order is the plan's. Among the steps that may run, it
starts first those on the longest remaining path (by the payloads' ``cost`` estimates), and it lets at
most ``Backend.lanes`` steps that the engine does mostly one at a time (``Payload.lane``: creating and starting
containers and networks) run at once: on a small machine six containers started together each take
about as long as all six, so the one the rest of the run waits for (a database with seeds, say) comes
first and is ready sooner. It stops scheduling at the first failure, lets running steps notice the
abort, and re-raises that first failure (which names the service at fault). It records every
resource it created in a ledger (what later steps refer to, and what a report can list); rollback
itself goes by the run's labels, which also catch a resource whose creation was under way when the
failure came.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from envkit.backends.base import Backend
from envkit.errors import EnvkitError
from envkit.events import Event, EventKind, EventSink, Phase, ignore
from envkit.handlers import Context, Ledger, run_step
from envkit.probes import Aborted, ProbeLog
from envkit.seed_log import SeedLog
from envkit.steps import Step

__all__ = ["Executor", "Graph", "Ledger", "ranks"]


class Graph(Protocol):
    """What the executor runs: a plan of ``up`` (``envkit.plan.Plan``) or of work on a live run
    (``envkit.live.LivePlan``)."""

    @property
    def run_id(self) -> str: ...

    @property
    def steps(self) -> tuple[Step, ...]: ...

    def step(self, step_id: str) -> Step: ...


def ranks(steps: Sequence[Step]) -> dict[str, float]:
    """Each step's rank: its own cost plus the costliest chain of steps that wait for it (directly or
    not), i.e. how long the plan goes on after it starts, at the least. Higher runs first. Ranked from
    the steps nothing waits for back to the first ones (a cycle, a planner bug, ranks by cost alone)."""
    by_id = {s.id: s for s in steps}
    dependants: dict[str, list[str]] = {sid: [] for sid in by_id}
    for s in steps:
        for a in set(s.after) & by_id.keys():
            dependants[a].append(s.id)
    unranked = {sid: len(ds) for sid, ds in dependants.items()}  # dependants not ranked yet
    todo = [sid for sid, n in unranked.items() if n == 0]
    rank: dict[str, float] = {}
    for sid in todo:  # grows while it is walked
        rank[sid] = by_id[sid].payload.cost + max((rank[d] for d in dependants[sid]), default=0.0)
        for a in set(by_id[sid].after) & by_id.keys():
            unranked[a] -= 1
            if unranked[a] == 0:
                todo.append(a)
    return {sid: rank.get(sid, by_id[sid].payload.cost) for sid in by_id}


class Executor:
    def __init__(self, backend: Backend, on_event: EventSink = ignore, max_parallel: int = 16,
                 deadline: float | None = None, existing: Mapping[str, str] | None = None,
                 probes: ProbeLog | None = None, seeds: SeedLog | None = None, lanes: int | None = None) -> None:
        self.backend = backend
        self.on_event = on_event
        self.max_parallel = max_parallel
        self.lanes = lanes if lanes is not None else backend.lanes  # None: no bound
        self.deadline = deadline  # time.monotonic() value by which everything must be ready
        self.abort = threading.Event()
        self.ledger = Ledger()
        # Containers the plan acts on without creating them (a live run's): name -> id.
        self.ledger.containers.update(existing or {})
        self.probes = probes  # the readiness checks' results go here (forensics)
        self.seeds = seeds  # and the seed steps' results

    def run(self, plan: Graph) -> Ledger:
        pending = {s.id: set(s.after) for s in plan.steps}
        dependants: dict[str, list[str]] = {}
        for s in plan.steps:
            for a in s.after:
                dependants.setdefault(a, []).append(s.id)
        rank = ranks(plan.steps)
        order = {s.id: i for i, s in enumerate(plan.steps)}  # ties: the plan's own order
        running: dict[Future[None], Step] = {}
        queued: list[tuple[float, int, str]] = []  # (-rank, order, id): may run, waits for a slot
        busy = 0  # lanes in use
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="envkit-step") as pool:
            try:
                ready = [sid for sid, deps in pending.items() if not deps]
                while ready or running or queued:
                    for sid in ready:
                        del pending[sid]
                        heapq.heappush(queued, (-rank[sid], order[sid], sid))
                    ready = []
                    held: list[tuple[float, int, str]] = []
                    while queued and len(running) < self.max_parallel and not self.abort.is_set():
                        item = heapq.heappop(queued)
                        step = plan.step(item[2])
                        if step.payload.lane:
                            if self.lanes is not None and busy >= self.lanes:
                                held.append(item)
                                continue
                            busy += 1
                        running[pool.submit(self._run_step, plan.run_id, step)] = step
                    for item in held:
                        heapq.heappush(queued, item)
                    if not running:
                        break  # aborted with steps still queued: they never run
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        step = running.pop(fut)
                        if step.payload.lane:
                            busy -= 1
                        exc = fut.exception()
                        if exc is not None:
                            if failure is None and not isinstance(exc, Aborted):
                                failure = exc
                            self.abort.set()
                            continue
                        for nxt in dependants.get(step.id, []):
                            if nxt in pending:
                                pending[nxt].discard(step.id)
                                if not pending[nxt] and not self.abort.is_set():
                                    ready.append(nxt)
            except BaseException:  # Ctrl-C in the waiting thread: stop everything, then let it through
                self.abort.set()
                raise
        self.backend.settle()  # what a step left running behind it (a gate's fallback file) is done too
        if failure is not None:
            raise failure
        if pending:  # a plan whose steps wait for a step it does not hold: a planner bug, not a success
            raise AssertionError(f"steps never became ready: {', '.join(sorted(pending))}")
        return self.ledger

    # -- one step -----------------------------------------------------------------------------------
    @staticmethod
    def _event(run_id: str, step: Step, phase: Phase, message: str, detail: str = "", duration: float = 0.0,
               kind: EventKind = "step") -> Event:
        return Event(kind, run_id, message, phase=phase, action=step.action,
                     service=step.services[0] if len(step.services) == 1 else "", replica=step.replica,
                     services=step.services, target=step.target, duration=duration, detail=detail, step=step.id)

    def _run_step(self, run_id: str, step: Step) -> None:
        if self.abort.is_set():
            raise Aborted()
        self.on_event(self._event(run_id, step, "start", f"{step.action} {step.target}", step.payload.detail))

        def output(line: str) -> None:
            self.on_event(self._event(run_id, step, "", line, line, kind="output"))

        def progress(detail: str) -> None:
            self.on_event(self._event(run_id, step, "progress", detail, detail))

        began = time.monotonic()
        try:
            done = run_step(Context(self.backend, self.ledger, self.abort, step, output, self.deadline, progress,
                                    probes=self.probes, seeds=self.seeds))
        except Aborted:
            raise
        except EnvkitError as exc:
            reason = str(exc).splitlines()[0]
            self.on_event(self._event(run_id, step, "failed", reason, reason, time.monotonic() - began))
            raise
        self.on_event(self._event(run_id, step, "done", done.message, done.detail, time.monotonic() - began))
