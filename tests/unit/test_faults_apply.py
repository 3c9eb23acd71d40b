"""Faults on the in-memory engine: parameters and scenarios checked (pure), container and network faults
applied and healed from the labels alone, refusals where the engine lacks a capability."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.base import Capability
from envkit.backends.fake import FakeBackend
from envkit.errors import BlueprintError, Unsupported, UsageError
from envkit.faults import apply as faults
from envkit.faults.kinds import parse, parse_duration
from envkit.faults.scenarios import scenario
from envkit.faults.toxics import Latency, ResetPeer

from .conftest import WriteBlueprint

BP = """
    name: fx
    services:
      db:
        image: postgres:16
        ports: [5432]
      api:
        image: postgres:16
        replicas: 2
        networks: {default: null, back: {aliases: [api-internal]}}
    networks: {back: null}
    faults:
      db-slow: {service: db, latency: 2s, direction: both}
      db-flaky: {service: db, reset: {after_bytes: 4096}, probability: 0.3}
      api-down: {service: api, stop: true, replica: 1, for: 10s}
"""


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"postgres:16"})


@pytest.fixture
def env(write_blueprint: WriteBlueprint, fake: FakeBackend) -> Iterator[api.Environment]:
    environment = api.up(write_blueprint(BP, {}), name="r1", env={}, backend=fake)
    yield environment
    environment.down()


def test_parameters_are_checked_and_typed() -> None:
    spec = parse("latency", {"latency": "200ms", "jitter": "0.02s", "direction": "both", "probability": "0.5"})
    assert spec.toxic == Latency(ms=200, jitter_ms=20) and spec.directions == ("upstream", "downstream")
    assert spec.probability == 0.5 and spec.family == "connection"
    assert parse("reset-peer", {"after_bytes": 4096}).toxic == ResetPeer(after_bytes=4096)
    assert parse("disconnect", {"peer": "api"}).kind == "partition"
    assert parse("loss", {"percent": "30%"}).percent == 30
    assert parse_duration("1.5m", "x") == 90000 and parse_duration(250, "x") == 250
    for kind, params, message in [
        ("explode", {}, "unknown fault kind 'explode'"),
        ("latency", {}, "needs latency="),
        ("latency", {"latency": "soon"}, "'latency': 'soon' is not a duration"),
        ("latency", {"latency": 5, "speed": 1}, "unknown parameter 'speed'"),
        ("latency", {"latency": 5, "probability": 2}, "'probability'"),
        ("loss", {"percent": 130}, "'percent'"),
        ("partition", {}, "needs peer="),
        ("pause", {"replica": 0}, "count from 1"),
        ("latency", {"latency": 5, "direction": "sideways"}, "upstream, downstream or both"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse(kind, params)


def test_scenarios_read_the_short_and_long_forms() -> None:
    s = scenario("x", {"service": "db", "reset": {"after_bytes": 4096}, "probability": 0.3})
    assert (s.kind, dict(s.params)) == ("reset", {"after_bytes": 4096, "probability": 0.3})
    assert scenario("y", {"service": "db", "loss": 30}).params == {"percent": 30}
    assert scenario("z", {"service": "w", "stop": True, "for": "10s"}).duration == 10
    for body, message in [({"latency": 5}, "service"), ({"service": "db"}, "exactly one fault kind"),
                          ({"service": "db", "pause": True, "stop": True}, "exactly one"),
                          ({"service": "db", "pause": 3}, "takes no value"),
                          ({"service": "db", "latency": 5, "colour": 1}, "faults.q.colour: unknown key")]:
        with pytest.raises(UsageError, match=message):
            scenario("q", body)


def test_a_blueprint_scenario_error_names_the_file_line_and_key(write_blueprint: WriteBlueprint) -> None:
    folder = write_blueprint("""
        name: fx
        services: {db: {image: postgres:16}}
        faults:
          ok: {service: db, pause: true}
          bad: {service: nope, latency: 1s}
          worse: {service: db, latency: fast}
    """, {})
    with pytest.raises(BlueprintError) as caught:
        api.validate(folder)
    text = str(caught.value)
    assert "faults.bad.service: no service 'nope'" in text and ":6:" in text
    assert "faults.worse" in text and "not a duration" in text


def test_container_faults_apply_and_heal_from_the_labels(env: api.Environment, fake: FakeBackend) -> None:
    record = faults.apply(fake, "r1", "api", "pause", {"replica": 2})
    states = {c.labels[L.REPLICA]: c.status for c in env.refresh().services["api"]}
    assert states == {"1": "running", "2": "paused"}
    # another process: only the engine's labels
    listed = faults.faults(fake, "r1")
    assert [(f.id, f.kind, f.service) for f in listed] == [(record.id, "pause", "api")]
    assert faults.heal(fake, "r1", "db") == []  # another service: nothing to heal
    assert [f.id for f in faults.heal(fake, "r1")] == [record.id]
    assert {c.status for c in env.refresh().services["api"]} == {"running"}
    assert faults.faults(fake, "r1") == []
    faults.apply(fake, "r1", "db", "kill")
    assert env.refresh().services["db"][0].status == "exited"
    faults.heal(fake, "r1")
    assert env.refresh().services["db"][0].status == "running"


def test_disconnect_heals_with_the_same_aliases(env: api.Environment, fake: FakeBackend) -> None:
    before = {c.id: dict(c.aliases) for c in env.refresh().services["api"]}
    faults.apply(fake, "r1", "api", "disconnect", {"network": "back"})
    assert all(L.network_name("r1", "back") not in c.addresses for c in env.refresh().services["api"])
    faults.heal(fake, "r1")
    after = {c.id: dict(c.aliases) for c in env.refresh().services["api"]}
    assert after == before and all("api-internal" in a[L.network_name("r1", "back")] for a in after.values())


def test_the_environment_api_heals_on_exit_and_keeps_a_timeline(env: api.Environment, fake: FakeBackend,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), env.fault("db", "stop"):
        assert env.refresh().services["db"][0].status == "exited"
        raise RuntimeError("the test failed")
    assert env.refresh().services["db"][0].status == "running"
    active = env.fault("api-down")  # a scenario: api replica 1 stopped, healed by its timer after 10 s
    assert active.duration == 10 and not active.healed
    assert [c.status for c in env.refresh().services["api"]] == ["exited", "running"]
    assert [e.record.kind for e in env.faults()] == ["stop", "stop"]
    assert [bool(e.healed_at) for e in env.faults()] == [True, False]
    env.heal()
    assert active.healed is False  # healed by env.heal: the handle heals nothing more
    active.heal()
    assert all(e.healed_at for e in env.faults())
    bundle = env.collect(tmp_path / "bundle")
    timeline = (bundle / "faults.txt").read_text()
    assert timeline.count("stop ") == 2 and timeline.count(" healed ") == 2
    with pytest.raises(UsageError, match=r"no fault scenario 'nope'.*db-flaky, db-slow"):
        env.fault("nope")


def test_refused_where_the_engine_cannot(write_blueprint: WriteBlueprint) -> None:
    fake = FakeBackend(images={"postgres:16"}, capabilities={Capability.GATE, Capability.COPY_FILES})
    with api.up(write_blueprint(BP, {}), name="r2", env={}, backend=fake) as env:
        for kind, params in [("pause", {}), ("stop", {}), ("disconnect", {}), ("latency", {"latency": 5}),
                             ("loss", {"percent": 5})]:
            with pytest.raises(Unsupported):
                faults.apply(fake, "r2", "db", kind, params)
        assert faults.faults(fake, "r2") == []
        with pytest.raises(UsageError, match="no service 'nope'"):
            env.fault("nope", "pause")


def test_status_names_the_fault_that_holds_a_replica_down_not_a_failure(env: api.Environment,
                                                                        fake: FakeBackend) -> None:
    record = faults.apply(fake, "r1", "api", "stop", {"replica": 1})
    by_container = {s.container: s for s in env.status() if s.service == "api"}
    down, up = by_container["envkit-r1-api-1"], by_container["envkit-r1-api-2"]
    assert down.ready == f"not ready: stopped by fault {record.id} (heal it with `envkit heal r1 api`)"
    assert not down.ok and up.ok  # still not ready (status exits 6), but not "failed: exited with code 0"
    faults.heal(fake, "r1")
    assert all(s.ok for s in env.status())
    paused = faults.apply(fake, "r1", "db", "pause")
    (row,) = [s for s in env.status() if s.service == "db"]
    assert row.ready == f"not ready: paused by fault {paused.id} (heal it with `envkit heal r1 db`)"  # not "paused"
    env.stop("db")  # stopped since: no longer what the pause made of it
    (row,) = [s for s in env.status() if s.service == "db"]
    assert row.state == "exited" and "by fault" not in row.ready


def test_status_json_lists_the_faults_of_each_replica_as_the_text_form_does(
        env: api.Environment, fake: FakeBackend, capsys: pytest.CaptureFixture[str]) -> None:
    from envkit.cli import main

    stop = faults.apply(fake, "r1", "api", "stop", {"replica": 1}, seed=3)
    pause = faults.apply(fake, "r1", "db", "pause")
    faults.heal(fake, "r1", fault_id=pause.id)
    assert main(["status", "r1"], backend=fake) == 6
    text = capsys.readouterr().out
    assert f"fault {stop.id} since" in text and f"fault {pause.id} " in text and "→ healed" in text
    assert main(["status", "--json", "r1"], backend=fake) == 6
    rows = {r["container"]: r for r in json.loads(capsys.readouterr().out)}
    assert [(f["id"], f["kind"], f["healed_at"], f["seed"], f["seeded"]) for f in rows["envkit-r1-api-1"]["faults"]] \
        == [(stop.id, "stop", None, 3, True)]
    assert rows["envkit-r1-api-2"]["faults"] == []  # replica 2 was not stopped
    (healed,) = rows["envkit-r1-db-1"]["faults"]
    assert healed["id"] == pause.id and healed["healed_at"] and healed["applied_at"] == pause.at
    assert rows["envkit-r1-api-1"]["ready"].startswith(f"not ready: stopped by fault {stop.id}")


def test_a_stop_kill_or_pause_stays_in_force_through_envkit_start_and_restart(env: api.Environment,
                                                                              fake: FakeBackend) -> None:
    # The start ran the replica again (a restart unpaused it) while the record, env.faults() and heal still
    # called the fault active: status said "ready", and after the next `envkit stop`, "stopped by fault".
    for kind, verb, held in (("stop", "start", "exited"), ("kill", "restart", "exited"), ("pause", "restart", "paused")):
        record = faults.apply(fake, "r1", "db", kind)
        result = getattr(env, verb)("db")
        assert result.info.services["db"][0].status == held, (kind, verb)  # what the command reports
        assert env.info.services["db"][0].status == held and env.refresh().services["db"][0].status == held
        assert f"fault {record.id} ({kind} db) applied again to the restarted replica" in result.notes
        (active,) = faults.faults(fake, "r1")
        assert active.id == record.id and active.generation == 1
        faults.heal(fake, "r1")
        assert env.refresh().services["db"][0].status == "running" and faults.faults(fake, "r1") == []
        # the timeline keeps how often it was put back (the healed entry said 0, the active one 1)
        assert [f.generation for f in faults.history(fake, "r1") if f.id == record.id] == [1]


def test_connections_open_before_a_redirect_are_counted_and_named() -> None:
    from envkit.faults.records import FaultRecord
    from envkit.faults.rules import live_script, parse_live

    script = live_script([6379, 80])
    assert "/:18EB$/" in script and "/:0050$/" in script and '$4 == "01"' in script  # ports in /proc/net/tcp hex
    assert parse_live("envkit-live 6379 2\nenvkit-live 80 0\niptables: done\n") == {6379: 2}
    record = FaultRecord("f1", "r1", "cache", "latency", {}, "t", 7,
                         ({"name": "envkit-r1-cache-1", "live": {"6379": 2}}, {"name": "envkit-r1-cache-2"}))
    note = record.live_note()
    assert "fault f1" in note and "envkit-r1-cache-1:6379 (2)" in note and "cache-2" not in note
    assert FaultRecord("f2", "r1", "cache", "latency", {}, "t", 7, ({"name": "x"},)).live_note() == ""


def test_a_connection_scenario_on_a_service_without_a_published_port_is_refused_at_load(
        write_blueprint: WriteBlueprint) -> None:
    """Checked at load like its service: at apply it could only fail ("name the port")."""
    text = """
        name: fx
        services:
          cache: {image: postgres:16}
        faults:
          cache-slow: {service: cache, latency: 300ms}
          cache-slow-6379: {service: cache, latency: 300ms, port: 6379}
          cache-down: {service: cache, stop: true}
    """
    with pytest.raises(BlueprintError) as caught:
        api.load(write_blueprint(text, {}))
    message = str(caught.value)
    assert "faults.cache-slow" in message and "publishes no TCP port" in message and "port: 6379" in message
    assert "cache-slow-6379" not in message and "cache-down" not in message
