"""Reset between tests: ``@pytest.mark.envkit_reset("db")``, or ini ``envkit_reset = db`` for every test.

After each such test that used ``envkit_env``, the named services (none named: every service of the
run that has a snapshot) are put back to their seeded state (``Environment.reset``): the test's writes
never reach the next test, while the environment itself — every other service, the ports, the outputs
— stays up for the rest of its scope. See docs/snapshots.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envkit.pytest_plugin import report
from envkit.pytest_plugin.session import requested_env

__all__ = ["add_options", "envkit_reset_after", "services_to_reset"]

MARKER = ("envkit_reset(*services): after the test, put these services of envkit_env (default: every one "
          "with a snapshot) back to their seeded state")


def add_options(parser: pytest.Parser) -> None:
    parser.addini("envkit_reset", "Services of envkit_env reset after every test that uses it "
                  "(comma-separated; `*`: every one with a snapshot; default: none).", default="")


def services_to_reset(item: pytest.Item) -> tuple[str, ...] | None:
    """None: no reset; () every service with a snapshot; else the services named."""
    mark = item.get_closest_marker("envkit_reset")
    if mark is not None:
        if not all(isinstance(s, str) for s in mark.args):
            raise pytest.UsageError(f"{item.nodeid}: envkit_reset takes service names, got {mark.args!r}")
        return tuple(mark.args)
    text = str(item.config.getini("envkit_reset") or "").strip()
    if not text:
        return None
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    return () if names == ("*",) else names


@pytest.fixture(autouse=True)
def envkit_reset_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Resets the services ``services_to_reset`` names once the test is over (only if it used envkit_env)."""
    services = services_to_reset(request.node)
    if services is None:
        yield
        return
    from envkit.environment import Environment
    from envkit.errors import EnvkitError

    # Asked for by the test or its fixtures' arguments: set up before this fixture's end, still there after
    # the test. Asked for with request.getfixturevalue (the outputs fixture of docs/runners.md): known only
    # once the test has run, and gone by now if its scope was the test's own.
    env = request.getfixturevalue("envkit_env") if "envkit_env" in request.fixturenames else None
    yield
    env = env if env is not None else requested_env(request.node)
    if not isinstance(env, Environment):
        return
    try:
        env.reset(*services)
    except EnvkitError as exc:
        report.fail(f"envkit: reset after {request.node.nodeid} failed: {exc}")
