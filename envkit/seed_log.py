"""What each seed step did, for the forensics bundle's ``seeds.txt`` and its summary (docs/forensics.md).

The ``seed`` handler (``envkit.handlers``) records one ``SeedResult`` per step it ran: which service and
step (index, kind, file), when it began and how long it took, what came back (the exit code of an sql,
exec or run step; the HTTP status of an http step), the last lines of its output, and the error if it
failed. A ``SeedLog`` keeps them, thread-safe; ``envkit.forensics.Recorder`` holds one for ``up``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["OUTPUT_LINES", "SeedLog", "SeedResult", "seeds_text", "summary_lines"]

OUTPUT_LINES = 30  # the tail of a step's output that is kept
SUMMARY_LINES = 10


@dataclass(frozen=True)
class SeedResult:
    service: str
    index: int  # 1-based, of ``total`` in the service's ``seed:`` list
    total: int
    kind: str  # sql | copy | exec | http | run
    file: str  # relative to the blueprint's folder; "" for an inline step
    started: float  # wall clock (seconds since the epoch)
    duration: float
    exit_code: int | None = None  # sql, exec, run
    http_status: int | None = None  # http
    output: tuple[str, ...] = ()  # its last lines
    error: str = ""  # why it failed; "" when it succeeded

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def step(self) -> str:
        return f"{self.index}/{self.total} {self.kind}" + (f" {self.file}" if self.file else "")

    @property
    def answer(self) -> str:
        if self.http_status is not None:
            return f"HTTP {self.http_status}"
        return f"exit {self.exit_code}" if self.exit_code is not None else "-"


class SeedLog:
    def __init__(self) -> None:
        self._results: list[SeedResult] = []
        self._lock = threading.Lock()

    def record(self, result: SeedResult) -> None:
        with self._lock:
            self._results.append(result)

    def results(self) -> list[SeedResult]:
        with self._lock:
            return sorted(self._results, key=lambda r: (r.started, r.service, r.index))

    def of(self, service: str) -> list[SeedResult]:
        return [r for r in self.results() if r.service == service]

    def failed(self, service: str) -> SeedResult | None:
        return next((r for r in self.of(service) if not r.ok), None)


def _tail(lines: Sequence[str], n: int) -> list[str]:
    return [f"      | {line}" for line in [ln for ln in lines if ln.strip()][-n:]]


def seeds_text(log: SeedLog, planned: Iterable[tuple[str, int, int, str]], offset: Callable[[float], str]) -> str:
    """``seeds.txt``: every planned step (service, index, total, shown) by service, with its result, or
    "not run" for one the failure (or an abort) kept from running. ``offset``: wall time → "+1.23s"."""
    lines = ["seed steps: when (from the plan's start), how long, what came back, and the tail of the output", ""]
    done = {(r.service, r.index): r for r in log.results()}
    by_service: dict[str, list[tuple[int, int, str]]] = {}
    for service, index, total, shown in planned:
        by_service.setdefault(service, []).append((index, total, shown))
    for extra in done.values():  # a step that ran without being planned here: still shown
        if all(i != extra.index for i, _, _ in by_service.get(extra.service, [])):
            by_service.setdefault(extra.service, []).append((extra.index, extra.total,
                                                             f"{extra.kind} {extra.file}".strip()))
    for service, steps in by_service.items():
        lines.append(f"{service}:")
        for index, total, shown in sorted(steps):
            found = done.get((service, index))
            if found is None:
                lines.append(f"  {index}/{total} {shown:<34} {'-':>9} {'-':>8}  not run")
                continue
            r = found
            what = f"{r.kind} {r.file}".strip()
            result = "ok" if r.ok else f"FAILED: {r.error}"
            lines.append(f"  {r.index}/{r.total} {what:<34} {offset(r.started):>9} {r.duration:>7.2f}s  {r.answer:<9}"
                         f"  {result}")
            lines += _tail(r.output, OUTPUT_LINES if not r.ok else 5)
    return "\n".join(lines) + "\n"


def summary_lines(r: SeedResult) -> list[str]:
    """What SUMMARY.txt says of the seed step at fault, right under the culprit."""
    lines = [f"  seed step {r.step}: failed after {r.duration:.2f}s ({r.answer}): {r.error}"]
    if r.output:
        lines.append("  output of the step:")
        lines += [f"    | {line}" for line in [ln for ln in r.output if ln.strip()][-SUMMARY_LINES:]]
    return lines
