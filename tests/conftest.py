"""Suite-wide guard: when the whole session is over, no envkit container, network or volume it created
may remain on the engine. A leftover fails the run (and is listed), whichever test leaked it.

Snapshots (``io.envkit.snapshot``) carry no run label and outlive runs on purpose; a test that makes one
removes it, so they are checked here too: one made during the session and still there fails it."""

from __future__ import annotations

import pytest

# The plugin's tests drive inner pytest sessions (tests/plugin); pytest only takes this at the top level.
pytest_plugins = ["pytester"]

_before: set[str] | None = None


def _managed() -> set[str] | None:
    try:
        from envkit import labels as L
        from envkit.backends import connect

        backend = connect()
    except Exception:
        return None
    try:
        runs = {f"{r.kind} {r.name}" for r in backend.list_resources({L.MANAGED: "true", L.RUN: None})}
        return runs | {f"snapshot {r.kind} {r.name}" for r in backend.list_resources({L.SNAPSHOT: None})
                       if r.labels.get(L.ROLE) in ("snapshot", "snapshot-data")}
    finally:
        backend.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before
    if not hasattr(session.config, "workerinput"):  # xdist workers leave this to the controller
        _before = _managed()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _before is None or hasattr(session.config, "workerinput"):
        return
    left = sorted((_managed() or set()) - _before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEFT BEHIND by the test suite: {', '.join(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
