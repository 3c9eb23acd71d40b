"""What the plugin shows: progress events (with -v), the end-of-session summary, and the "envkit logs"
section of a failing test's report.

``failure_section`` and ``failure_bundle`` (the forensics bundle, with ``--envkit-artifacts``) are the one
place the plugin handles a failing test's environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from envkit.events import Event
    from envkit.pytest_plugin.pool import Entry

__all__ = ["BUNDLE_SECTION", "LOG_GRACE", "LOG_LINES", "LOG_SECTION", "bundle_name", "fail", "failure_bundle",
           "failure_section", "say", "shown", "summary_lines", "summary_rows"]

LOG_SECTION = "envkit logs"
BUNDLE_SECTION = "envkit forensics"
LOG_GRACE = 0.5  # seconds after a test for its services' last lines to reach the engine's log
LOG_LINES = 400  # the newest lines kept in one report section


def fail(message: str) -> NoReturn:
    """``pytest.fail(message, pytrace=False)`` that shows the message alone. Called while an EnvkitError is
    handled, pytest.fail chains it, and pytest prints a chain even without a traceback: the envkit message
    (a seed's output, a service's last log lines) came twice, with "During handling of the above exception,
    another exception occurred" between."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def shown(event: Event) -> bool:
    """Whether -v shows this event: the plan, each service ready (or job complete), and clean-up notes."""
    if event.kind in ("plan", "rollback", "teardown", "note"):
        return True
    return event.kind == "step" and event.phase == "done" and event.action in ("ready", "complete")


def summary_rows(history: Iterable[Entry]) -> list[dict[str, Any]]:
    """One plain dict per environment (what an xdist worker sends its controller)."""
    return [{"run": e.env.run_id, "source": e.source, "scope": e.scope, "how": e.how,
             "seconds": round(e.seconds, 2), "outcome": e.outcome} for e in history]


def summary_lines(rows: Sequence[dict[str, Any]], problems: Sequence[str], verbose: bool) -> list[str]:
    """The "envkit" section at the end of the session: kept runs always, every run with -v, problems."""
    kept = sorted({r["run"] for r in rows if r["outcome"] == "kept"})
    lines = [f"kept run {run} after a failure; remove it with: envkit down {run}" for run in kept]
    if verbose:
        lines += [f"run {r['run']}: {r['source']}, {r['scope']} scope, {r['how']} in {r['seconds']:.1f}s, "
                  f"{r['outcome']}" for r in rows]
    return lines + list(problems)


def failure_section(entry: Entry, since: float, until: float, keep: bool) -> tuple[str, str]:
    """The report section of a failing test: its services' logs for the test's time window (setup start
    to the end of the failing phase, plus LOG_GRACE), at most LOG_LINES of them."""
    from envkit.errors import EnvkitError

    until += LOG_GRACE
    time.sleep(max(0.0, min(LOG_GRACE, until - time.time())))  # let the last lines reach the engine's log
    try:
        lines = entry.env.logs(since=since, until=until).splitlines()
    except EnvkitError as exc:
        lines = [f"(could not read the logs: {exc})"]
    if len(lines) > LOG_LINES:
        lines = [f"(... {len(lines) - LOG_LINES} earlier lines)", *lines[-LOG_LINES:]]
    clock = "%H:%M:%S"
    head = (f"run {entry.env.run_id}, services' logs from {time.strftime(clock, time.localtime(since))} "
            f"to {time.strftime(clock, time.localtime(until))}")
    if keep and entry.how == "up":
        head += f"; the run is kept: envkit down {entry.env.run_id}"
    return LOG_SECTION, "\n".join([head, *(lines or ["(no log lines in this window)"])])


def bundle_name(nodeid: str) -> str:
    """A folder name for a test: its id made safe (and short), with a hash that keeps ids apart."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_.")[:100]
    return f"{safe}-{hashlib.sha256(nodeid.encode()).hexdigest()[:8]}"


def failure_bundle(entry: Entry, folder: Path, nodeid: str, failure: str) -> tuple[str, str]:
    """Write the failing test's forensics bundle to ``folder/<test>/``; the report section that names it."""
    from envkit.errors import EnvkitError

    try:
        path = entry.env.collect(folder / bundle_name(nodeid), reason=f"test {nodeid} failed\n{failure}")
    except EnvkitError as exc:
        return BUNDLE_SECTION, f"no forensics bundle: {exc}"
    return BUNDLE_SECTION, f"forensics bundle: {path / 'SUMMARY.txt'}"


def say(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, past pytest's capturing (nowhere on an xdist worker)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(line)
