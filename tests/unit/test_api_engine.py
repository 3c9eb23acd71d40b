"""The API over an injected engine: the version it stamps, rollback that a second Ctrl-C cannot cut
short, and status from one inspected state (no Docker: the in-memory fake)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import envkit
from envkit import api
from envkit import labels as L
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import ServiceFailed, UsageError

BLUEPRINT = """
    name: shop
    services:
      db:
        image: postgres:16
        ports: [5432]
      migrate:
        image: python:3
        kind: job
"""


@pytest.fixture
def shop(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


def test_runs_are_stamped_with_the_one_version(shop: Blueprint) -> None:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.exit_codes["migrate"] = 0
    with api.up(shop, name="v-1", backend=fake) as env:
        assert {r.labels[L.VERSION] for r in fake.list_resources({L.RUN: "v-1"})} == {envkit.__version__}
        rows = {s.service: s for s in env.status()}
        assert rows["migrate"].ready == "completed"  # its exit code comes from an inspection, not a listing
        assert rows["db"].ready == "ready" and list(rows["db"].ports) == ["5432/tcp"]


def test_rollback_survives_a_second_ctrl_c(shop: Blueprint, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.exit_codes["migrate"] = 2
    real = api.teardown
    interrupts = iter([True])

    def interrupted_once(*args: Any, **kwargs: Any) -> dict[str, int]:
        if next(interrupts, False):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "teardown", interrupted_once)
    with pytest.raises(ServiceFailed, match="service migrate: job exited with code 2"):
        api.up(shop, name="rb-1", backend=fake)
    assert fake.list_resources({L.RUN: "rb-1"}) == []


def test_an_unknown_engine_is_a_usage_error(shop: Blueprint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_ENGINE", "nomad")
    with pytest.raises(UsageError, match="unknown engine 'nomad'"):
        api.ls()
    with pytest.raises(UsageError, match="--engine: unknown engine 'podman'"):
        api.up(shop, engine="podman")
