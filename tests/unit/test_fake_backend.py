"""The in-memory engine the other unit tests stand on: it must behave like the real one where they rely on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends.base import (
    BuildSpec,
    Capability,
    ContainerSpec,
    Endpoint,
    ExecResult,
    MountSpec,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    PortKey,
    VolumeSpec,
)
from envkit.backends.fake import FakeBackend, matches
from envkit.errors import Busy, Conflict, EngineError, NotFound, Unsupported


def spec(name: str, service: str = "api", run: str = "r1", **kw: object) -> ContainerSpec:
    labels = ((L.MANAGED, "true"), (L.RUN, run), (L.SERVICE, service))
    return ContainerSpec(name=name, image="img", labels=labels, networks=(NetworkAttachment("net", (service,)),), **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"img"})
    fake.create_network(NetworkSpec("net", ((L.RUN, "r1"),)))
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
    fake.create_volume(VolumeSpec("v2", ((L.RUN, "r2"),)))
    assert sorted(r.name for r in fake.list_resources({L.RUN: None})) == ["c1", "c2", "net", "v2"]
    assert sorted(r.name for r in fake.list_resources({L.RUN: "r2"})) == ["c2", "v2"]
    assert [c.name for c in fake.list_containers({L.SERVICE: "api", L.RUN: "r1"})] == ["c1"]
    assert fake.list_resources({"nope": None}) == []


def test_containers_need_their_image_and_networks(fake: FakeBackend) -> None:
    with pytest.raises(NotFound, match="no such image"):
        fake.create_container(ContainerSpec(name="x", image="missing", labels=(), networks=(NetworkAttachment("net"),)))
    with pytest.raises(NotFound, match="network other not found"):
        fake.create_container(ContainerSpec(name="x", image="img", labels=(), networks=(NetworkAttachment("other"),)))
    fake.create_container(spec("x"))
    with pytest.raises(Conflict, match="already in use"):
        fake.create_container(spec("x"))


def test_start_runs_or_exits_with_the_configured_code(fake: FakeBackend) -> None:
    fake.exit_codes["job"] = 2
    service = fake.create_container(spec("s1", ports=(PortBinding(PortKey(80)),)))
    job = fake.create_container(spec("j1", service="job"))
    fake.start_container(service)
    fake.start_container(job)
    running, exited = fake.inspect_container(service), fake.inspect_container(job)
    assert (running.status, running.exit_code, running.running) == ("running", None, True)
    assert running.ports == {PortKey(80): Endpoint("127.0.0.1", 49153)}
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
    with pytest.raises(Conflict, match="not running"):
        fake.exec(ident, ("true",))
    assert fake.logs(ident) == ""  # nothing printed before its process begins
    fake.start_container(ident)
    assert fake.logs(ident) == "one\ntwo\nthree\n"
    assert fake.logs(ident, tail=2) == "two\nthree\n"
    assert list(fake.follow_logs(ident)) == ["one\ntwo\nthree\n"]
    assert fake.exec(ident, ("pg_isready",)) == ExecResult(1, "not yet")
    assert fake.inspect_container(ident).health == "starting"


def test_builds_and_pulls_fail_as_configured(fake: FakeBackend) -> None:
    fake.build_failures["bad:1"] = "COPY failed"
    lines: list[str] = []
    with pytest.raises(EngineError, match=r"^COPY failed$"):
        fake.build_image(BuildSpec("bad:1", Path("ctx"), "Dockerfile", (), None, ()), lines.append)
    assert lines[-1] == "error: COPY failed"
    assert not fake.image_exists("bad:1")
    fake.pull_image("good:1")
    assert fake.image_exists("good:1")


def test_removal_tolerates_what_is_gone_and_refuses_what_is_in_use(fake: FakeBackend) -> None:
    fake.create_volume(VolumeSpec("v"))
    ident = fake.create_container(spec("s1", mounts=(MountSpec("volume", "v", "/data", False),)))
    net = next(iter(fake.networks))
    with pytest.raises(Busy, match="active endpoints"):
        fake.remove_network(net)
    with pytest.raises(Busy, match="in use"):
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


def test_listing_is_not_detailed_inspection_is(fake: FakeBackend) -> None:
    fake.exit_codes["job"] = 3
    job = fake.create_container(spec("j1", service="job"))
    fake.start_container(job)
    listed = fake.list_containers({L.SERVICE: "job"})[0]
    assert (listed.status, listed.exit_code, listed.detailed) == ("exited", None, False)
    inspected = fake.inspect_container(job)
    assert (inspected.exit_code, inspected.oom_killed, inspected.detailed) == (3, False, True)


def test_fewer_capabilities_are_refused_by_name() -> None:
    fake = FakeBackend(images={"img"}, capabilities={Capability.GATE})
    assert fake.supports(Capability.GATE) and not fake.supports(Capability.PAUSE)
    with pytest.raises(Unsupported, match=r"^engine fake cannot pause containers$"):
        fake.pause_container("anything")
    with pytest.raises(Unsupported, match="cannot copy files into containers"):
        fake.copy_into("anything", "/tmp", b"")
