"""Plan-time capability checks: a blueprint key an engine cannot serve is refused before anything runs,
at the key's position in the file, naming the key and the engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit import capabilities
from envkit.backends.base import Capability
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.capabilities import Need
from envkit.errors import BlueprintError
from envkit.plan import RunIdentity, make_plan

IDENTITY = RunIdentity("r1", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
TEXT = """\
services:
  db:
    image: app
  api:
    image: app
    depends_on: [db]
    ports:
      - 8080
      - 9000/udp
"""
# A stand-in for the keys of later issues (a fault that pauses a service, say): here, a udp port.
UDP_NEEDS_PAUSE = Need("services.*.ports", Capability.PAUSE,
                       lambda svc: [p.at for p in svc.ports if p.protocol == "udp"])


@pytest.fixture
def bp(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(TEXT)


def reduced(without: Capability) -> FakeBackend:
    return FakeBackend(images={"app"}, capabilities=set(Capability) - {without})


def plan_on(bp: Blueprint, fake: FakeBackend, only: tuple[str, ...] = ()) -> None:
    make_plan(bp, IDENTITY, frozenset(fake.images), {}, only, capabilities=fake.capabilities, engine=fake.name)


def test_a_key_the_engine_cannot_serve_is_refused_at_its_position(
    bp: Blueprint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capabilities, "NEEDS", (UDP_NEEDS_PAUSE,))
    fake = reduced(Capability.PAUSE)
    with pytest.raises(BlueprintError) as caught:
        plan_on(bp, fake)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column) == (str(bp.file), 9, 9)
    assert str(problem) == f"{bp.file}:9:9 services.api.ports[1]: engine {fake.name} cannot pause containers"


def test_an_engine_with_the_capability_plans_the_key(bp: Blueprint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "NEEDS", (UDP_NEEDS_PAUSE,))
    plan_on(bp, reduced(Capability.COPY_FILES))


def test_only_the_selected_services_are_checked(bp: Blueprint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "NEEDS", (UDP_NEEDS_PAUSE,))
    plan_on(bp, reduced(Capability.PAUSE), only=("db",))


def test_every_problem_is_reported(bp: Blueprint) -> None:
    needs = (UDP_NEEDS_PAUSE, Need("services.*.image", Capability.PAUSE, lambda svc: [("services", svc.name, "image")]))
    with pytest.raises(BlueprintError) as caught:
        capabilities.check(bp, ("api", "db"), "swarm", frozenset(), needs)
    assert [str(p).split(" ", 1)[1] for p in caught.value.problems] == [
        "services.db.image: engine swarm cannot pause containers",
        "services.api.image: engine swarm cannot pause containers",
        "services.api.ports[1]: engine swarm cannot pause containers",
    ]


def test_an_engine_without_any_capability_still_plans_a_gateable_blueprint(bp: Blueprint) -> None:
    """The pre-start gate has a fallback (the plain start order): lacking it refuses nothing."""
    fake = FakeBackend(images={"app"}, capabilities=())
    p = make_plan(bp, IDENTITY, frozenset(fake.images), {}, capabilities=fake.capabilities, engine=fake.name)
    assert p.step("start:api-1").after == ("create:api-1", "usable:db")
    assert "release:api-1" not in {s.id for s in p.steps}
