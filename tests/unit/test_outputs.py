"""Outputs: templates resolved against a live run (here the in-memory engine), masking and dotenv."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit.api import Environment
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import EnvkitError
from envkit.execute import Executor
from envkit.outputs import JSON_SCHEMA, host_port, mask, resolve, run_document, service_host, to_dotenv
from envkit.plan import RunIdentity, make_plan
from envkit.runs import RunInfo, describe

BLUEPRINT = """
    name: shop
    services:
      db:
        image: postgres:16
        ports: ["15432:5432"]
      api:
        image: python:3
        allow: [public-ports]
        ports: ["0.0.0.0:18080:8080", "9090"]
    outputs:
      DATABASE_URL: postgresql://app:s3cret@${services.db.host}:${services.db.ports.5432}/app
      API_URL: http://${services.api.host}:${services.api.ports.8080}/
      METRICS_PORT: ${services.api.ports.9090}
      DB_CONTAINER: ${services.db.name}
      RUN: ${run.id}
"""


@pytest.fixture
def info(load_text: Callable[..., Blueprint]) -> RunInfo:
    bp = load_text(BLUEPRINT)
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.host = "engine.example"  # where published ports are reached from this machine
    identity = RunIdentity("shop-1", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
    Executor(fake).run(make_plan(bp, identity, frozenset(fake.images), {}, capabilities=fake.capabilities))
    return describe(fake, "shop-1")


def test_templates_resolve_against_the_live_run(info: RunInfo) -> None:
    assert resolve(info) == {
        "API_URL": "http://engine.example:18080/",  # bound to 0.0.0.0: reached through the engine's host
        # bound to the engine's loopback: also reached through the engine's host from here
        "DATABASE_URL": "postgresql://app:s3cret@engine.example:15432/app",
        "DB_CONTAINER": "envkit-shop-1-db-1",
        "METRICS_PORT": "49153",  # ephemeral: whatever the engine picked
        "RUN": "shop-1",
    }


def test_explicit_templates_override_the_runs_own(info: RunInfo) -> None:
    assert resolve(info, (("X", "${services.db.ports.5432}-${run.id}"),)) == {"X": "15432-shop-1"}


def test_host_port_names_what_is_missing(info: RunInfo) -> None:
    assert host_port(info, "db", 5432) == ("engine.example", 15432)
    with pytest.raises(EnvkitError, match="run shop-1 has no service 'cache'"):
        host_port(info, "cache", 6379)
    with pytest.raises(EnvkitError, match="service db of run shop-1 publishes no port 5433/tcp"):
        host_port(info, "db", 5433)


def test_the_host_of_a_service_has_one_answer(info: RunInfo, load_text: Callable[..., Blueprint]) -> None:
    # ${services.x.host} and Environment.host() come from one function: they cannot disagree.
    assert resolve(info, (("H", "${services.api.host}"),)) == {"H": service_host(info, "api")} == {"H": "engine.example"}
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.host = "engine.example"
    bp = load_text(BLUEPRINT.replace('"0.0.0.0:18080:8080"', '"10.1.2.3:18080:8080"'))
    Executor(fake).run(make_plan(bp, RunIdentity("shop-2", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0"),
                                 frozenset(fake.images), {}, capabilities=fake.capabilities))
    env = Environment(fake, "shop-2", owned=False)
    assert env.host("api") == env.outputs["API_URL"].split("/")[2].split(":")[0] == "10.1.2.3"
    assert env.host("db") == "engine.example"


def test_run_document_is_versioned_and_lists_ports(info: RunInfo) -> None:
    doc = run_document(info, resolve(info))
    assert doc["schema"] == JSON_SCHEMA == "envkit.run/v1"
    assert doc["run"] == "shop-1"
    assert doc["services"]["db"]["replicas"][0]["ports"] == {"5432/tcp": {"host": "engine.example", "port": 15432}}
    assert doc["services"]["api"]["replicas"][0]["state"] == "running"


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("DATABASE_URL", "postgresql://app:s3cret@127.0.0.1:5432/app", "postgresql://app:****@127.0.0.1:5432/app"),
    ("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f", "amqp://guest:****@localhost:5672/%2f"),
    ("API_URL", "http://127.0.0.1:8080/health", "http://127.0.0.1:8080/health"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("DB_PASSWORD", "s3cret", "****"),
    ("POSTGRES_PASS", "s3cret", "****"),
    ("API_TOKEN", "abc123", "****"),
    ("CLIENT_SECRET", "abc123", "****"),
    ("STRIPE_API_KEY", "sk_test_1", "****"),
    ("PRIVATE_KEY_PEM", "-----BEGIN", "****"),
    ("PASSWORD_URL", "https://user:pw@example.com/", "https://user:****@example.com/"),
    ("DB_HOST", "127.0.0.1", "127.0.0.1"),
])
def test_mask_hides_passwords_and_secret_like_keys(key: str, value: str, shown: str) -> None:
    assert mask(key, value) == shown


def test_mask_hides_a_password_without_a_user_name() -> None:
    assert mask("REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0") == "redis://:****@127.0.0.1:6379/0"


def test_to_dotenv_quotes_only_what_needs_it() -> None:
    text = to_dotenv({
        "PLAIN": "postgresql://app:pw@127.0.0.1:5432/app",
        "QUERY": "http://h/?a=1&b=2",
        "EMPTY": "",
        "SPACES": "hello world",
        "QUOTE": 'say "hi"',
        "DOLLAR": "pa$word",
        "BACKSLASH": "C:\\temp",
        "NEWLINE": "line1\nline2",
    })
    assert text == (
        "PLAIN=postgresql://app:pw@127.0.0.1:5432/app\n"
        'QUERY="http://h/?a=1&b=2"\n'
        "EMPTY=\n"
        'SPACES="hello world"\n'
        'QUOTE="say \\"hi\\""\n'
        'DOLLAR="pa\\$word"\n'
        'BACKSLASH="C:\\\\temp"\n'
        'NEWLINE="line1\\nline2"\n'
    )


def test_to_dotenv_of_nothing_is_empty() -> None:
    assert to_dotenv({}) == ""


def test_a_dead_service_fails_its_own_outputs_only(load_text: Callable[..., Blueprint]) -> None:
    # db killed (a fault, a crash): the test that reads API_URL to see the API answer 503 must get it
    import envkit

    fake = FakeBackend(images={"postgres:16", "python:3"})
    identity = RunIdentity("shop-2", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
    Executor(fake).run(make_plan(load_text(BLUEPRINT), identity, frozenset(fake.images), {},
                                 capabilities=fake.capabilities))
    fake.kill_container("envkit-shop-2-db-1", "SIGKILL")
    outputs = envkit.attach("shop-2", backend=fake).outputs
    assert outputs["API_URL"] == "http://127.0.0.1:18080/" and outputs["RUN"] == "shop-2"
    assert outputs["DB_CONTAINER"] == "envkit-shop-2-db-1"
    with pytest.raises(EnvkitError, match=r"service db: exited with code 137 .*its ports are gone"):
        outputs["DATABASE_URL"]
    assert sorted(outputs) == ["API_URL", "DATABASE_URL", "DB_CONTAINER", "METRICS_PORT", "RUN"]
    # whether a run has an output is not reading it (Mapping's `in` read the value, and raised)
    assert "DATABASE_URL" in outputs and "NOPE" not in outputs
    assert set(outputs.keys()) >= {"DATABASE_URL"}
    with pytest.raises(EnvkitError, match="service db: exited"):  # all of them at once: as before
        dict(outputs)
    with pytest.raises(EnvkitError, match="service db: exited"):
        resolve(describe(fake, "shop-2"))
