"""A lost engine in the middle of ``up``, on the in-memory engine: the error names the engine, not the
service whose step was running, says whether the run was removed, and who removes it if not."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.base import Resource
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import ConnectionLost, EngineUnavailable, ServiceFailed, engine_lost

BLUEPRINT = """
    name: shop
    services:
      db: {image: postgres:16}
      api: {image: python:3, depends_on: [db]}
"""


class Lost(FakeBackend):
    """An engine whose connection drops during the start of ``api`` — and, with ``gone``, stays away."""

    def __init__(self, gone: bool) -> None:
        super().__init__(images={"postgres:16", "python:3"})
        self.gone, self.away, self.dropped = gone, False, ""

    def start_container(self, container_id: str) -> None:
        if self._container(container_id).spec.name.endswith("-api-1"):
            self.away, self.dropped = self.gone, container_id[:12]
            raise ConnectionLost(f"start container {container_id[:12]}: connection dropped (Remote end closed "
                                 "connection without response)")
        super().start_container(container_id)

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        if self.away:
            raise EngineUnavailable("cannot reach the Docker engine at tcp://127.0.0.1:2375: Connection refused\n"
                                    "  start Docker …")
        return super().list_resources(labels)


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


def test_a_connection_lost_for_good_leaves_a_run_that_the_error_says_who_removes(shop: Blueprint) -> None:
    fake = Lost(gone=True)
    with pytest.raises(EngineUnavailable) as caught:
        api.up(shop, name="lost-1", backend=fake)
    assert str(caught.value) == (
        f"lost the connection to the fake engine while run lost-1 was coming up: start container {fake.dropped}: "
        "connection dropped (Remote end closed connection without response)\n"
        "  run lost-1 is partly made and could not be removed (cannot reach the Docker engine at "
        "tcp://127.0.0.1:2375: Connection refused)\n"
        "  once the engine answers again, `envkit gc` removes the run (or `envkit down lost-1`); check the engine "
        "(Docker: `docker info`)")
    assert caught.value.exit_code == 4
    fake.away = False  # back: what is left is the run's, claim included (gc's sign of an up that never ended)
    assert any(r.labels.get(L.ROLE) == "claim" for r in fake.list_resources({L.RUN: "lost-1"}))


def test_a_connection_that_drops_and_comes_back_is_the_engines_failure_and_the_run_is_removed(
        shop: Blueprint) -> None:
    fake = Lost(gone=False)
    with pytest.raises(EngineUnavailable) as caught:
        api.up(shop, name="lost-2", backend=fake)
    first, second = str(caught.value).splitlines()
    assert first.startswith("lost the connection to the fake engine while run lost-2 was coming up: start container")
    assert second == "  what run lost-2 had made was removed; check the engine (Docker: `docker info`) and try again"
    assert fake.list_resources({L.RUN: "lost-2"}) == []
    assert isinstance(caught.value.__cause__, ServiceFailed)  # what the step said, kept as the cause


def test_engine_lost_finds_the_engine_behind_a_wrapped_failure() -> None:
    dropped = ConnectionLost("start: connection dropped")
    try:
        try:
            raise dropped
        except ConnectionLost as exc:
            raise ServiceFailed("api", f"cannot start: {exc}") from exc
    except ServiceFailed as wrapped:
        assert engine_lost(wrapped) is dropped
    assert engine_lost(ServiceFailed("api", "exited with code 1")) is None
