"""Where the shop's services are: the blueprint's outputs, from whichever envkit brought it up.

Under `envkit run` (ENVKIT_RUN is set) the outputs are already environment variables; otherwise the
envkit pytest plugin brings blueprints/shop up (pytest.ini names it) and `envkit_env.outputs` has them.
"""

from __future__ import annotations

import os

import pytest
from shop_client import OUTPUTS, Shop

import envkit


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # With the plugin disabled (`-p no:envkit`) nobody declares the key pytest.ini sets: declare it here,
    # or pytest warns about an unknown option.
    if not pluginmanager.has_plugin("envkit"):
        parser.addini("envkit_blueprint", "read by the envkit pytest plugin (disabled in this session)")


@pytest.fixture
def shop(request: pytest.FixtureRequest) -> Shop:
    """The running shop. Function scope, so it works with any --envkit-scope."""
    if os.environ.get("ENVKIT_RUN") or not request.config.pluginmanager.has_plugin("envkit"):
        missing = [key for key in OUTPUTS if key not in os.environ]
        if missing:
            pytest.fail(f"no {', '.join(missing)} in the environment: run under `envkit run blueprints/shop -- ...` "
                        "or with the envkit pytest plugin enabled", pytrace=False)
        return Shop({key: os.environ[key] for key in OUTPUTS})
    return Shop(request.getfixturevalue("envkit_env").outputs)


@pytest.fixture
def shop_env(request: pytest.FixtureRequest) -> envkit.Environment:
    """The shop's envkit run itself, for tests that break it on purpose (``shop_env.fault(...)``): the
    plugin's environment, or under `envkit run` a handle on ENVKIT_RUN's run (not owned: never removed)."""
    if os.environ.get("ENVKIT_RUN") or not request.config.pluginmanager.has_plugin("envkit"):
        if not os.environ.get("ENVKIT_RUN"):
            pytest.fail("no ENVKIT_RUN in the environment: faults need the shop's run", pytrace=False)
        return envkit.attach(os.environ["ENVKIT_RUN"])
    env: envkit.Environment = request.getfixturevalue("envkit_env")
    return env
