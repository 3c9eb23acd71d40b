"""Faults around a test: ``@pytest.mark.envkit_fault("payments-slow")`` (a scenario of the blueprint's
``faults:``) or ``@pytest.mark.envkit_fault("db", "latency", latency="200ms")``.

The fault is applied to ``envkit_env`` before the test body and healed after it, pass or fail. Several
marks apply several faults (healed in reverse order). See docs/faults.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envkit.pytest_plugin import report

__all__ = ["MARKER", "envkit_fault_around"]

MARKER = ("envkit_fault(scenario | service, kind, **params): apply this fault to envkit_env for the test "
          "(a scenario of the blueprint's faults:, or a service, a kind and its parameters); healed after it")


@pytest.fixture(autouse=True)
def envkit_fault_around(request: pytest.FixtureRequest, envkit_reset_after: None) -> Iterator[None]:
    """Applies each ``envkit_fault`` mark of the test to envkit_env, and heals them once the test is over:
    before the reset of ``envkit_reset`` (set up before this, so torn down after it), so that the reset
    gives the next test the seeded state, ready, rather than a service a heal has only just started."""
    marks = list(request.node.iter_markers("envkit_fault"))
    if not marks:
        yield
        return
    if "envkit_env" not in request.fixturenames:
        raise pytest.UsageError(f"{request.node.nodeid}: envkit_fault needs the test to use envkit_env")
    from envkit.errors import EnvkitError

    env = request.getfixturevalue("envkit_env")
    active = []
    try:
        for mark in reversed(marks):  # the closest mark last: outer (module/class) faults first
            if not mark.args or len(mark.args) > 2 or not all(isinstance(a, str) for a in mark.args):
                raise pytest.UsageError(f"{request.node.nodeid}: envkit_fault takes a scenario name, or a service "
                                        f"and a kind, got {mark.args!r}")
            kind = mark.args[1] if len(mark.args) == 2 else None
            active.append(env.fault(mark.args[0], kind, **mark.kwargs))
    except EnvkitError as exc:
        for a in reversed(active):
            a.heal()
        report.fail(f"envkit: fault for {request.node.nodeid}: {exc}")
    try:
        yield
    finally:
        for a in reversed(active):
            try:
                a.heal()
            except EnvkitError as exc:
                report.fail(f"envkit: healing {a.record.describe()} after {request.node.nodeid}: {exc}")
