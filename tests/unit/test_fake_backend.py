"""The in-memory engine the other unit tests stand on: it must behave like the real one where they rely on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends.base import BuildSpec, ContainerSpec, ExecResult, MountSpec, PortBinding
from envkit.backends.fake import FakeBackend, matches
from envkit.errors import EngineError


def spec(name: str, service: str = "api", run: str = "r1", **kw: object) -> ContainerSpec:
    labels = ((L.MANAGED, "true"), (L.RUN, run), (L.SERVICE, service))
    return ContainerSpec(name=name, image="img", labels=labels, networks=(("net", (service,)),), **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"img"})
    fake.create_network("net", {L.RUN: "r1"}, internal=False)
    return fake


@pytest.mark.parametrize(("wanted", "result"), [
    ({}, True),
    ({"a": None}, True),
    ({"a": "1"}, True),
    ({"a": "2"}, False),
    ({"a": "1", "b": None}, True),
    ({"c": None}, False),
    ({"b": ""}, True),
])
def test_label_filter_is_dockers(wanted: dict[str, str | None], result: bool) -> None:
    assert matches({"a": "1", "b": ""}, wanted) is result


def test_list_filters_by_key_only_and_key_value(fake: FakeBackend) -> None:
    fake.create_container(spec("c1", run="r1"))
    fake.create_container(spec("c2", run="r2"))
    fake.create_volume("v2", {L.RUN: "r2"})
    assert sorted(r.name for r in fake.list_resources({L.RUN: None})) == ["c1", "c2", "net", "v2"]
    assert sorted(r.name for r in fake.list_resources({L.RUN: "r2"})) == ["c2", "v2"]
    assert [c.name for c in fake.list_containers({L.SERVICE: "api", L.RUN: "r1"})] == ["c1"]
    assert fake.list_resources({"nope": None}) == []


def test_containers_need_their_image_and_networks(fake: FakeBackend) -> None:
    with pytest.raises(EngineError, match="No such image"):
        fake.create_container(ContainerSpec(name="x", image="missing", labels=(), networks=(("net", ()),)))
    with pytest.raises(EngineError, match="network other not found"):
        fake.create_container(ContainerSpec(name="x", image="img", labels=(), networks=(("other", ()),)))
    fake.create_container(spec("x"))
    with pytest.raises(EngineError, match="already in use"):
        fake.create_container(spec("x"))


def test_start_runs_or_exits_with_the_configured_code(fake: FakeBackend) -> None:
    fake.exit_codes["job"] = 2
    service = fake.create_container(spec("s1", ports=(PortBinding(80, "tcp", "127.0.0.1", None),)))
    job = fake.create_container(spec("j1", service="job"))
    fake.start_container(service)
    fake.start_container(job)
    running, exited = fake.inspect_container(service), fake.inspect_container(job)
    assert (running.status, running.exit_code, running.running) == ("running", None, True)
    assert running.ports == {"80/tcp": ("127.0.0.1", 49153)}
    assert running.addresses["net"]
    assert (exited.status, exited.exit_code) == ("exited", 2)
    assert fake.wait_container(job, 0.01) == 2
    assert fake.wait_container(service, 0.01) is None


def test_wait_returns_when_the_container_exits(fake: FakeBackend) -> None:
    ident = fake.create_container(spec("s1"))
    fake.start_container(ident)

    timer = threading.Timer(0.05, fake.exit_container, (ident, 0))
    timer.start()
    assert fake.wait_container(ident, 5.0) == 0
    timer.join()


def test_logs_exec_and_health_are_configurable(fake: FakeBackend) -> None:
    fake.log_text["api"] = "one\ntwo\nthree\n"
    fake.exec_results["s1"] = ExecResult(1, "not yet")
    fake.health["api"] = "starting"
    ident = fake.create_container(spec("s1"))
    with pytest.raises(EngineError, match="not running"):
        fake.exec(ident, ("true",))
    fake.start_container(ident)
    assert fake.logs(ident) == "one\ntwo\nthree\n"
    assert fake.logs(ident, tail=2) == "two\nthree\n"
    assert list(fake.follow_logs(ident)) == ["one\ntwo\nthree\n"]
    assert fake.exec(ident, ("pg_isready",)) == ExecResult(1, "not yet")
    assert fake.inspect_container(ident).health == "starting"


def test_builds_and_pulls_fail_as_configured(fake: FakeBackend) -> None:
    fake.build_failures["bad:1"] = "COPY failed"
    lines: list[str] = []
    with pytest.raises(EngineError, match="COPY failed"):
        fake.build_image(BuildSpec("bad:1", Path("ctx"), "Dockerfile", (), None, ()), lines.append)
    assert lines[-1] == "error: COPY failed"
    assert not fake.image_exists("bad:1")
    fake.pull_image("good:1")
    assert fake.image_exists("good:1")


def test_removal_tolerates_what_is_gone_and_refuses_what_is_in_use(fake: FakeBackend) -> None:
    fake.create_volume("v", {})
    ident = fake.create_container(spec("s1", mounts=(MountSpec("volume", "v", "/data", False),)))
    net = next(iter(fake.networks))
    with pytest.raises(EngineError, match="active endpoints"):
        fake.remove_network(net)
    with pytest.raises(EngineError, match="in use"):
        fake.remove_volume("v")
    fake.remove_container(ident, 0)
    fake.remove_container(ident, 0)
    fake.remove_network(net)
    fake.remove_network(net)
    fake.remove_volume("v")
    fake.remove_volume("v")
    assert (fake.containers, fake.networks, fake.volumes) == ({}, {}, {})


def test_calls_are_recorded_by_name(fake: FakeBackend) -> None:
    ident = fake.create_container(spec("s1"))
    fake.start_container(ident)
    fake.remove_container(ident, 0)
    assert fake.calls == [("create_network", "net"), ("create_container", "s1"), ("start_container", "s1"),
                          ("remove_container", "s1")]
