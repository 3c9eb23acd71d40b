"""A run's logs interleaved by time (envkit.logs) on the in-memory engine, and --since's formats."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from envkit import api
from envkit.backends.fake import FakeBackend
from envkit.errors import UsageError
from envkit.logs import follow, merged, parse_since

from .conftest import WriteBlueprint

BLUEPRINT = """
    name: chat
    services:
      api: {image: "img:1"}
      web: {image: "img:1", replicas: 2}
"""


@pytest.fixture
def env(write_blueprint: WriteBlueprint) -> api.Environment:
    fake = FakeBackend(images={"img:1"})
    environment = api.up(write_blueprint(BLUEPRINT), name="r1", env={}, backend=fake)
    return environment


def say(env: api.Environment, source: str, text: str) -> None:
    service, _, replica = source.partition("-")
    assert isinstance(env.backend, FakeBackend)
    env.backend.emit(env.info.replicas(service)[int(replica or 1) - 1].id, text)
    time.sleep(0.002)  # distinct times


def test_lines_of_every_container_come_in_the_order_they_were_printed(env: api.Environment) -> None:
    for source, text in [("api", "a1"), ("web-2", "w2-1"), ("web-1", "w1-1"), ("api", "a2"), ("web-2", "w2-2")]:
        say(env, source, text)
    entries = merged(env.backend, env.info)
    assert [(e.source, e.text) for e in entries] == [("api", "a1"), ("web-2", "w2-1"), ("web-1", "w1-1"),
                                                     ("api", "a2"), ("web-2", "w2-2")]
    assert [e.text for e in merged(env.backend, env.info, ["web"])] == ["w2-1", "w1-1", "w2-2"]
    assert env.logs() == "api | a1\nweb-2 | w2-1\nweb-1 | w1-1\napi | a2\nweb-2 | w2-2\n"
    assert entries[0].line(timestamps=True, width=5).startswith(f"api   | {entries[0].at:%Y-%m-%dT%H:%M:%S.}")


def test_tail_is_per_container_and_since_bounds_the_time(env: api.Environment) -> None:
    for text in ["old-1", "old-2"]:
        say(env, "api", text)
    say(env, "web-1", "web-old")
    cut = time.time()
    time.sleep(0.005)
    say(env, "api", "new")
    assert [e.text for e in merged(env.backend, env.info, tail=1)] == ["web-old", "new"]
    assert [e.text for e in merged(env.backend, env.info, since=cut)] == ["new"]
    assert [e.text for e in merged(env.backend, env.info, until=cut)] == ["old-1", "old-2", "web-old"]
    assert [e.text for e in follow(env.backend, env.info, ["api"], tail=2)][:2] == ["old-2", "new"]


def test_since_takes_durations_times_and_unix_times() -> None:
    now = 1_714_560_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("1714559000", now) == 1_714_559_000
    assert parse_since("2024-05-01T10:40:00Z", now) == 1_714_560_000
    assert parse_since("2024-05-01T12:40:00+02:00", now) == 1_714_560_000
    assert parse_since("2024-05-01", now) == datetime(2024, 5, 1).timestamp()  # local midnight, as docker reads it
    with pytest.raises(UsageError, match="--since 'yesterday': give a duration"):
        parse_since("yesterday", now)


def test_a_service_that_is_not_in_the_run_is_named(env: api.Environment, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"run r1 has no service db \(services: api, web\)"):
        merged(env.backend, env.info, ["db"])
