"""The executor runs a plan's steps, each as soon as the steps it waits for are done, in parallel.

It decides nothing: what to do and in which order is the plan's. It stops scheduling at the first
failure, lets running steps notice the abort, and re-raises that first failure (which names the
service at fault). It records every resource it created in a ledger (what later steps refer to, and
what a report can list); rollback itself goes by the run's labels, which also catch a resource whose
creation was under way when the failure came.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from envkit.backends.base import Backend
from envkit.errors import BuildFailed, EngineError, EnvkitError, ServiceFailed
from envkit.events import Event, EventSink, ignore
from envkit.plan import Plan, Step
from envkit.probes import Aborted, log_tail, wait_exited, wait_ready

__all__ = ["Executor", "Ledger"]

BUILD_TAIL = 25


@dataclass
class Ledger:
    """What this execution created, in creation order."""

    created: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, name)
    containers: dict[str, str] = field(default_factory=dict)  # step target (container name) -> id
    gated: set[str] = field(default_factory=set)  # container names created behind a gate
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, ident: str, name: str) -> None:
        with self.lock:
            self.created.append((kind, ident, name))
            if kind == "container":
                self.containers[name] = ident


class Executor:
    def __init__(self, backend: Backend, on_event: EventSink = ignore, max_parallel: int = 16,
                 deadline: float | None = None) -> None:
        self.backend = backend
        self.on_event = on_event
        self.max_parallel = max_parallel
        self.deadline = deadline  # time.monotonic() value by which everything must be ready
        self.abort = threading.Event()
        self.ledger = Ledger()

    def run(self, plan: Plan) -> Ledger:
        pending = {s.id: set(s.after) for s in plan.steps}
        dependants: dict[str, list[str]] = {}
        for s in plan.steps:
            for a in s.after:
                dependants.setdefault(a, []).append(s.id)
        running: dict[Future[None], Step] = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="envkit-step") as pool:
            try:
                ready = [sid for sid, deps in pending.items() if not deps]
                while ready or running:
                    for sid in ready:
                        del pending[sid]
                        step = plan.step(sid)
                        running[pool.submit(self._run_step, plan.run_id, step)] = step
                    ready = []
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        step = running.pop(fut)
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
        if failure is not None:
            raise failure
        if pending:  # a plan whose steps wait for a step it does not hold: a planner bug, not a success
            raise AssertionError(f"steps never became ready: {', '.join(sorted(pending))}")
        return self.ledger

    # -- one step -----------------------------------------------------------------------------------
    def _remaining(self, step: Step) -> float:
        if self.deadline is None:
            return step.timeout
        return max(0.0, min(step.timeout, self.deadline - time.monotonic()))

    def _run_step(self, run_id: str, step: Step) -> None:
        if self.abort.is_set():
            raise Aborted()
        service = ",".join(step.services)
        self.on_event(Event("step-start", run_id, f"{step.action} {step.target}", step.id, service))
        began = time.monotonic()
        try:
            detail = self._do(run_id, step)
        except Aborted:
            raise
        except EnvkitError as exc:
            self.on_event(Event("step-failed", run_id, str(exc).splitlines()[0], step.id, service,
                                time.monotonic() - began))
            raise
        self.on_event(Event("step-done", run_id, detail or f"{step.action} {step.target}", step.id, service,
                            time.monotonic() - began))

    def _do(self, run_id: str, step: Step) -> str:
        b = self.backend
        service = step.services[0] if step.services else ""
        if step.action == "build":
            assert step.build is not None
            tail: list[str] = []

            def line(text: str) -> None:
                if self.abort.is_set():
                    raise Aborted()  # leaving the build stream makes the engine cancel the build
                tail.append(text)
                del tail[:-BUILD_TAIL]
                self.on_event(Event("build-line", run_id, text, step.id, service))

            try:
                b.build_image(step.build, line)
            except EngineError as exc:
                reason = str(exc).removeprefix(f"build image {step.target}: ")
                raise BuildFailed(step.services, step.target, reason, tail) from exc
            return f"built {step.target}"
        if step.action == "pull":
            try:
                b.pull_image(step.target)
            except EngineError as exc:
                raise BuildFailed(step.services, step.target,
                                  f"image is not on the engine and cannot be pulled ({exc}); "
                                  "build it from a Dockerfile with 'build:' instead", []) from exc
            return f"pulled {step.target}"
        if step.action == "network":
            ident = b.create_network(step.target, dict(step.labels), step.internal)
            self.ledger.add("network", ident, step.target)
            return f"network {step.target}"
        if step.action == "volume":
            ident = b.create_volume(step.target, dict(step.labels))
            self.ledger.add("volume", ident, step.target)
            return f"volume {step.target}"
        if step.action == "create":
            assert step.container is not None
            if step.gate:
                ident, gated = b.create_gated_container(step.container)
            else:
                ident, gated = b.create_container(step.container), False
            self.ledger.add("container", ident, step.target)
            if gated:
                self.ledger.gated.add(step.target)
            return f"created {step.target}" + (" (gated)" if gated else "")
        ident = self.ledger.containers[step.target]
        gated = step.target in self.ledger.gated
        if step.action == "start" and step.gate and not gated:
            return f"{step.target}: starts at release (its image cannot be gated)"
        if step.action == "start" or (step.action == "release" and not gated):
            try:
                b.start_container(ident)
            except EngineError as exc:
                raise ServiceFailed(service, f"cannot start: {exc}", container=step.target) from exc
            return f"started {step.target}"
        if step.action == "release":
            try:
                b.release_container(ident)
            except EngineError as exc:
                state = b.inspect_container(ident)
                why = f"exited with code {state.exit_code} before its release" if not state.running else str(exc)
                raise ServiceFailed(service, why, log_tail(b, ident), step.target) from exc
            return f"released {step.target}"
        if step.action == "ready":
            began = time.monotonic()
            wait_ready(b, ident, service, step.probe, self._remaining(step), self.abort)
            return f"{service} ready in {time.monotonic() - began:.2f}s"
        if step.action == "complete":
            wait_exited(b, ident, service, self._remaining(step), self.abort)
            return f"{service} completed"
        raise AssertionError(f"unknown step action {step.action}")
