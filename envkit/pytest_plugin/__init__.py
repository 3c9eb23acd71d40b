"""pytest plugin: the ``envkit_env`` fixture, the ``envkit`` marker and the ``--envkit-*`` options.

    pytest --envkit-blueprint blueprints/shop          # one environment for the whole session
    pytest --envkit-scope module                       # ... or one per module / class / test

    def test_orders(envkit_env):                       # an envkit.Environment
        urllib.request.urlopen(envkit_env.outputs["API_URL"] + "/health")

    @pytest.mark.envkit("blueprints/hello", scope="function")
    def test_hello(envkit_env): ...                    # this test: its own blueprint and environment

Lifetimes. ``envkit_env`` has the scope chosen by ``--envkit-scope`` / ini ``envkit_scope`` (a dynamic
fixture scope), so fixtures of that scope can build on it. A marker gives a module, class or test its own
environment: the plugin parametrizes ``envkit_env`` for the marked tests (with a hidden id, so test ids do
not change), and pytest sets the fixture, and every fixture built on it, up again when a test asks for a
different environment than the one cached. The environments themselves live in a pool keyed by blueprint
and owning node (``pool.py``), and are removed when that node is finished (``policy.py``), so going from a
marked module back to the unmarked ones does not bring the session's environment up a second time.

The engine. Every environment comes from the ``envkit_backend`` fixture (session scope): by default the
engine named by ``--envkit-engine`` / ini ``envkit_engine`` (else ``ENVKIT_ENGINE``, else docker); a
conftest may override it to hand the plugin a backend of its own (the unit tests use the fake one).

Under ``envkit run BLUEPRINT -- pytest`` (``ENVKIT_RUN`` set) the unmarked tests' ``envkit_env`` is that
run, as with ``--envkit-reuse $ENVKIT_RUN``: no second environment, and the run is left to ``envkit run``
to remove. ``--envkit-blueprint`` on the command line (or ``--envkit-reuse``) still wins.

pytest-xdist. Each worker is a process of its own and gets environments of its own. With
``--envkit-shared`` the session's environment is one for all workers (``shared.py``).

Failures. A failing test gets an "envkit logs" report section (``report.py``). Ctrl-C, and SIGTERM while an
environment is up (``envkit.signals``), remove what the session made.

Importing this package is cheap and does nothing; envkit's core (and docker) is imported the first time a
test asks for ``envkit_env``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from envkit.pytest_plugin import faults, report, reset
from envkit.pytest_plugin.faults import envkit_fault_around  # noqa: F401 - the fixture, registered with the plugin
from envkit.pytest_plugin.pool import MarkerError, Want, want_from_mark
from envkit.pytest_plugin.reset import envkit_reset_after  # noqa: F401 - the fixture, registered with the plugin
from envkit.pytest_plugin.session import STATE as _STATE
from envkit.pytest_plugin.session import PluginState
from envkit.pytest_plugin.settings import Scope, add_options, read_settings

if TYPE_CHECKING:
    from envkit.api import Environment
    from envkit.backends.base import Backend

__all__ = ["envkit_backend", "envkit_env"]

def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    reset.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "envkit(blueprint, scope=None, reset=None): the module, class or test gets its own environment of BLUEPRINT "
        "(relative to the rootdir) for envkit_env; scope module | class | function, default: where the mark is; "
        "reset=\"function\" (or service names): reset it after every test (docs/snapshots.md).")
    config.addinivalue_line("markers", reset.MARKER)
    config.addinivalue_line("markers", faults.MARKER)
    state = PluginState(config, read_settings(config))
    reset.check_settings(config, state.settings)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "envkit-state")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and config.pluginmanager.is_registered(state):
        config.pluginmanager.unregister(state)


def pytest_report_header(config: pytest.Config) -> str | None:
    s = config.stash[_STATE].settings
    if s.attached:
        return f"envkit: using run {s.reuse} of `envkit run` (ENVKIT_RUN)"
    if s.reuse:
        return f"envkit: reusing run {s.reuse}"
    if s.blueprint:
        return f"envkit: blueprint {s.blueprint}, one environment per {s.scope}" + (
            " (shared by xdist workers)" if s.shared else "")
    return None


def _scope(fixture_name: str, config: pytest.Config) -> Scope:
    state = config.stash.get(_STATE, None)
    return state.settings.scope if state else "session"


@pytest.fixture(scope="session")
def envkit_backend(request: pytest.FixtureRequest) -> Backend:
    """The container engine behind every envkit environment of the session. By default the one named by
    --envkit-engine / ini envkit_engine (else $ENVKIT_ENGINE, else docker), connected on first use.
    Override this fixture (session scope) in a conftest to give the plugin a backend of your own."""
    from envkit.errors import EnvkitError

    try:
        return request.config.stash[_STATE].default_backend()
    except EnvkitError as exc:
        report.fail(f"envkit: {exc}")


@pytest.fixture(scope=_scope)
def envkit_env(request: pytest.FixtureRequest) -> Iterator[Environment]:
    """The envkit Environment for this test: the blueprint of the closest ``@pytest.mark.envkit``, else of
    --envkit-blueprint / ini envkit_blueprint (or the run named by --envkit-reuse). One per
    --envkit-scope (session by default); removed when that scope ends, unless --envkit-keep and a test
    using it failed."""
    state = request.config.stash[_STATE]
    env, release = state.acquire(request, getattr(request, "param", None))
    yield env
    if release is not None:
        release()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "envkit_env" not in metafunc.fixturenames:
        return
    found = next(metafunc.definition.iter_markers_with_node("envkit"), None)
    if found is None:
        return
    marked, mark = found
    try:
        want: Want = want_from_mark(mark, marked, metafunc.definition, metafunc.config.rootpath)
    except MarkerError as exc:
        report.fail(str(exc))
    metafunc.parametrize("envkit_env", [want], indirect=True, scope=want.scope,
                         ids=[getattr(pytest, "HIDDEN_PARAM", "envkit")])  # HIDDEN_PARAM: pytest >= 8.4
