"""Secret values: collected by the loader, kept out of labels, plan text, events and errors, read back from
the container that holds them; masking of URL passwords and libpq strings."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api, secrets
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.cli import main
from envkit.errors import BlueprintError, ServiceFailed
from envkit.events import Event
from envkit.outputs import mask
from envkit.secrets import Secret

LoadText = Callable[..., Blueprint]
PASSWORD = "s3cr/et@x"
BLUEPRINT = """
    secrets: [DB_PASSWORD]
    services:
      db:
        image: postgres:16
        environment:
          POSTGRES_PASSWORD: ${DB_PASSWORD:-fallback}
          TOKEN: {value: tok-123456, secret: true}
          PLAIN: hello
        ports: [5432]
        ready: {exec: [psql, "postgresql://app:${DB_PASSWORD}@127.0.0.1/app"]}
        labels: {note: "pw ${DB_PASSWORD}"}
      api:
        image: python:3
        environment: {DATABASE_URL: "postgresql://app:${DB_PASSWORD}@db:5432/app"}
    outputs:
      DATABASE_URL: postgresql://app:${DB_PASSWORD}@${services.db.host}:${services.db.ports.5432}/app
      DSN: host=${services.db.host} password=${DB_PASSWORD}
      TOKEN: {value: "tok-123456", secret: true}
      PLAIN: ${run.id}
"""


def test_the_loader_collects_the_secret_values(load_text: LoadText) -> None:
    bp = load_text(BLUEPRINT, env={"DB_PASSWORD": PASSWORD})
    assert sorted((s.name, s.value) for s in bp.secrets) == [("DB_PASSWORD", PASSWORD), ("db.TOKEN", "tok-123456")]
    assert bp.secret_outputs == {"TOKEN"}
    assert dict(bp.services["db"].environment)["TOKEN"] == "tok-123456"  # the container still gets it
    assert PASSWORD not in repr(bp.secrets)
    # Unset: the default it was substituted with is the secret.
    assert {s.value for s in load_text(BLUEPRINT).secrets} == {"fallback", "tok-123456"}


def test_an_output_marked_secret_must_hold_a_secret(load_text: LoadText) -> None:
    with pytest.raises(BlueprintError) as caught:
        load_text("services: {a: {image: x}}\noutputs: {URL: {value: 'postgresql://a:hunter2@h/db', secret: true}}\n")
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (2, "outputs.URL")
    assert "marked secret but holds no secret value" in problem.message
    with pytest.raises(BlueprintError) as caught:
        load_text("secrets: [1-x]\nservices: {a: {image: x, environment: {K: {secret: yes, vaule: 1}}}}\n")
    assert [f"{p.path}: {p.message}" for p in caught.value.problems] == [
        "secrets[0]: invalid variable name '1-x'",
        "services.a.environment.K: expected {value: ..., secret: true}: 'value' is missing",
        "services.a.environment.K.secret: expected true or false, got 'yes'",
        "services.a.environment.K.vaule: unknown key 'vaule' (did you mean 'value'?)"]


def _up(load_text: LoadText) -> tuple[FakeBackend, api.Environment, list[Event]]:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    events: list[Event] = []
    bp = load_text(BLUEPRINT, env={"DB_PASSWORD": PASSWORD})
    return fake, api.up(bp, name="sec-1", backend=fake, on_event=events.append), events


def test_no_label_and_no_plan_line_holds_a_secret(load_text: LoadText) -> None:
    fake, env, events = _up(load_text)
    try:
        labels = [dict(c.labels) for c in fake.containers.values()]
        text = repr(labels)
        assert PASSWORD not in text and "tok-123456" not in text
        db = next(x for x in labels if x["io.envkit.service"] == "db")
        assert db["io.envkit.output.DATABASE_URL"].startswith("postgresql://app:${secret:DB_PASSWORD}@")
        assert db["io.envkit.secret.DB_PASSWORD"] == "db/POSTGRES_PASSWORD"
        assert db["io.envkit.secret.db.TOKEN"] == "db/TOKEN"
        assert db["io.envkit.secret-output.TOKEN"] == "true"
        assert db["note"] == "pw ${secret:DB_PASSWORD}"
        assert "${secret:DB_PASSWORD}" in db["io.envkit.probe"]
        assert all(PASSWORD not in repr(e) for e in events)
        plan = api.plan(load_text(BLUEPRINT, env={"DB_PASSWORD": PASSWORD})).text()
        assert PASSWORD not in plan and "probe exec psql postgresql://app:${secret:DB_PASSWORD}@127.0.0.1/app" in plan
    finally:
        env.down()


def test_another_process_reads_the_secrets_back_from_the_containers(load_text: LoadText) -> None:
    fake, env, _ = _up(load_text)
    try:
        other = api.attach("sec-1", backend=fake)  # no blueprint: only the labels and the containers
        assert other.blueprint is None
        values = other.outputs
        assert values["DATABASE_URL"].startswith(f"postgresql://app:{PASSWORD}@")
        assert values["DSN"].endswith(f"password={PASSWORD}") and values["TOKEN"] == "tok-123456"
        assert values == env.outputs
        shown = other.shown_outputs
        assert shown["DATABASE_URL"].startswith("postgresql://app:****@") and shown["TOKEN"] == "****"
        assert shown["DSN"].endswith("password=****") and shown["PLAIN"] == "sec-1"
        assert other.status()[0].ready == "ready"  # the probe from the label, its secret restored
    finally:
        env.down()


def test_a_secret_held_inside_another_value_is_read_back_by_its_place() -> None:
    where = secrets.locate(Secret("P", "pw/1"), [("api", (("URL", "postgresql://a:pw/1@db/x"),))])
    assert where == "api/URL/15:19"
    assert secrets.read_back(where, {"api": {"URL": "postgresql://a:pw/1@db/x"}}) == "pw/1"
    assert secrets.read_back("api/URL/x:1", {"api": {"URL": "v"}}) is None
    assert secrets.read_back("gone/URL", {}) is None
    assert secrets.locate(Secret("P", "nowhere"), [("api", (("A", "b"),))]) is None


def test_errors_and_events_are_scrubbed() -> None:
    hidden = (Secret("P", PASSWORD),)
    exc = ServiceFailed("db", f"readiness probe (exec psql postgresql://app:{PASSWORD}@h) failed",
                        (f"FATAL: password {PASSWORD} rejected",), "c")
    secrets.scrub_error(exc, hidden)
    assert PASSWORD not in str(exc) + exc.reason + "".join(exc.log_tail) and "****" in str(exc)
    event = secrets.scrub_event(Event("step", "r", f"x {PASSWORD}", detail=PASSWORD), hidden)
    assert (event.message, event.detail) == ("x ****", "****")


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("DATABASE_URL", "postgresql://app:s3cr/et@x@db:5432/app", "postgresql://app:****@db:5432/app"),
    ("URL", "redis://:pw@cache:6379/0", "redis://:****@cache:6379/0"),
    ("URL", "http://h:8080/a@b", "http://h:8080/a@b"),  # a port and a path, no password
    ("DSN", "host=db user=app password=s3cr/et@x dbname=app", "host=db user=app password=**** dbname=app"),
    ("DSN", r"host=db PASSWORD = 'it\'s x' dbname=a", "host=db PASSWORD = **** dbname=a"),
    ("API_TOKEN", "abc", "****"),
    ("API_URL", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
])
def test_mask(key: str, value: str, shown: str) -> None:
    assert mask(key, value) == shown


def test_output_files_are_for_their_owner_only(load_text: LoadText, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake, env, _ = _up(load_text)
    target = tmp_path / "out.env"
    target.write_text("old")
    os.chmod(target, 0o644)
    try:
        assert main(["outputs", "sec-1", "--write-env", str(target), "--force"], backend=fake) == 0
        assert stat.S_IMODE(target.stat().st_mode) == 0o600 and PASSWORD in target.read_text()
        assert main(["outputs", "sec-1"], backend=fake) == 0  # not a terminal: the real values, for a pipe
        assert PASSWORD in capsys.readouterr().out
    finally:
        env.down()
