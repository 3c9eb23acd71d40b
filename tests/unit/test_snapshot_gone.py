"""A snapshot that goes missing between ``up``'s look-up and the create (another process's `envkit
snapshots rm` or `docker image rm`), on the in-memory engine: the run falls back to seeding the service
as if it had missed, says so in an event, and captures the snapshot again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit import api
from envkit import snapshots as S
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.events import Event

from .test_restore import BLUEPRINT, fake, snapshot_of  # noqa: F401 - the fixture, by name

SEEDED = BLUEPRINT.replace("        snapshot: {reset: restore}\n", "        snapshot: {reset: restore}\n"
                           "        seed: [{exec: [sh, -c, 'echo seeded']}]\n")


@pytest.mark.parametrize("piece", ["image", "data volume"])
def test_a_snapshot_gone_before_the_create_seeds_the_service_and_captures_it_again(
        fake: FakeBackend, load_text: Callable[..., Blueprint], piece: str) -> None:  # noqa: F811
    bp = load_text(SEEDED)
    snap = snapshot_of(fake, bp)
    events: list[Event] = []

    def hook(event: Event) -> None:
        events.append(event)
        if event.kind == "plan" and not any(e.detail == "snapshot gone" for e in events):  # the first plan only
            if piece == "image":
                fake.images.discard(snap.image)
            else:
                fake.remove_volume(snap.mounts[0][1])

    with api.up(bp, name="gone-1", backend=fake, on_event=hook) as env:
        db = env.info.replicas("db")[0]
        assert fake.containers[db.id].spec.image == "base:1"  # seeded, not from the snapshot
    notes = [e for e in events if e.detail in ("hit", "snapshot gone", "miss")]
    assert [e.detail for e in notes] == ["hit", "snapshot gone", "miss"]
    assert f"snapshot {snap.key[:16]} went missing" in notes[1].message and "seeding db instead" in notes[1].message
    assert any(e.action == "seed" and e.phase == "done" for e in events)
    again = S.find(fake, snap.key)  # captured again, under the same key
    assert again is not None and again.image in fake.images
