"""One run name, one owner: `up --name X` twice at once ends with one winner, untouched (the fake engine)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.base import NetworkSpec, VolumeSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.claim import TOKEN, NameInUse, claim, claim_name
from envkit.errors import ServiceFailed, UsageError

BLUEPRINT = """
    name: pair
    networks: {front: {}, back: {}}
    services:
      db:
        image: postgres:16
        networks: [back]
      api:
        image: python:3
        networks: [front, back]
        depends_on: [db]
"""


@pytest.fixture
def pair(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BLUEPRINT)


def stamp(owner: str) -> dict[str, str]:
    return {L.MANAGED: "true", L.RUN: "x", L.OWNER: owner, L.CREATED_AT: "2024-01-01T00:00:00Z"}


def test_two_ups_of_one_name_at_once_end_with_one_winner_untouched(pair: Blueprint) -> None:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    both_checked = threading.Barrier(2, timeout=10)
    create_volume = fake.create_volume

    def at_once(spec: VolumeSpec) -> str:
        if spec.name == claim_name("x"):
            both_checked.wait()  # both have passed the "does it exist?" check: only the claim decides now
        return create_volume(spec)

    fake.create_volume = at_once  # type: ignore[method-assign]
    results: list[object] = []

    def one() -> None:
        try:
            results.append(api.up(pair, name="x", backend=fake))
        except UsageError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if isinstance(r, api.Environment)]
    lost = [r for r in results if isinstance(r, NameInUse)]
    assert len(won) == 1 and len(lost) == 1
    assert str(lost[0]).startswith("run name 'x' is in use: another `up` of that name is under way (owner ")
    env = won[0]
    names = sorted(r.name for r in fake.list_resources({L.RUN: "x"}))
    assert names == ["envkit-x-api-1", "envkit-x-back", "envkit-x-db-1", "envkit-x-front"]  # no claim left
    assert [s.state for s in env.status()] == ["running", "running"]
    env.down()
    assert fake.list_resources({L.RUN: "x"}) == []


def test_a_name_taken_before_the_claim_is_refused_and_the_claim_dropped() -> None:
    fake = FakeBackend()
    fake.create_network(NetworkSpec("envkit-x-front", tuple(stamp("someone@else:1").items())))
    with pytest.raises(NameInUse, match=r"^run name 'x' is in use: network envkit-x-front belongs to a run of that "
                                        r"name \(owner someone@else:1\)"):
        claim(fake, "x", stamp("me@here:2"))
    assert [r.name for r in fake.list_resources({L.RUN: "x"})] == ["envkit-x-front"]


def test_the_claim_carries_the_run_labels_and_a_token_of_its_own() -> None:
    fake = FakeBackend()
    name = claim(fake, "x", stamp("me@here:2"))
    (held,) = fake.list_resources({L.RUN: "x"})
    assert name == held.name == "envkit--x" and held.kind == "volume"
    assert held.labels[L.ROLE] == "claim" and held.labels[L.OWNER] == "me@here:2" and len(held.labels[TOKEN]) == 16
    with pytest.raises(NameInUse, match=r"another `up` of that name is under way \(owner me@here:2\)"):
        claim(fake, "x", stamp("me@here:2"))  # same owner, same second: the token tells them apart


def test_a_failed_up_removes_its_claim(pair: Blueprint) -> None:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    fake.exit_codes["db"] = 1
    with pytest.raises(ServiceFailed):
        api.up(pair, name="y", backend=fake)
    assert fake.list_resources({L.RUN: "y"}) == []


def test_an_up_after_the_first_is_up_says_the_run_exists(pair: Blueprint) -> None:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    with api.up(pair, name="z", backend=fake):
        before = sorted(r.name for r in fake.list_resources({L.RUN: "z"}))
        with pytest.raises(UsageError, match=r"^run name 'z' is in use: a run of that name exists; choose another "
                                             r"--name or `envkit down z`$"):
            api.up(pair, name="z", backend=fake)
        assert sorted(r.name for r in fake.list_resources({L.RUN: "z"})) == before
