"""A capture that dies between the commit and the manifest (the process killed, the engine gone) leaves
the committed image, and no data volume when the service mounts none: `envkit snapshots rm KEY` and
`prune` remove it by its own labels, on the in-memory engine. Then two resets at the edges: one naming no
service (every one with a snapshot), and one of a run brought up without its snapshot."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envkit import api
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.base import VolumeSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import EngineError, UsageError

BLUEPRINT = """
    name: cut
    services:
      db: {image: base:1, snapshot: true, seed: [{exec: [sh, -c, 'echo seeded']}]}
"""


class DiesBeforeTheManifest(FakeBackend):
    def create_volume(self, spec: VolumeSpec) -> str:
        if dict(spec.labels).get(L.ROLE) == "snapshot":
            raise EngineError("the engine went away")
        return super().create_volume(spec)


def _cut_capture(load_text: Callable[..., Blueprint]) -> tuple[FakeBackend, str]:
    fake = DiesBeforeTheManifest(images={"base:1"})
    with pytest.raises(EngineError):
        api.up(load_text(BLUEPRINT), name="cut-1", backend=fake)
    (tag,) = [t for t in fake.images if t.startswith("envkit-snapshot/")]
    assert fake.list_resources({L.SNAPSHOT: None}) == []  # the image alone: the claim went with the run
    return fake, fake.image_labels[tag][L.SNAPSHOT]


def test_snapshots_rm_removes_the_image_of_a_capture_that_never_finished(load_text: Callable[..., Blueprint]) -> None:
    fake, key = _cut_capture(load_text)
    assert S.list_snapshots(fake) == []  # never used
    assert S.remove(fake, key[:16]) == [f"image {S.image_tag('db', key)}"]
    assert [t for t in fake.images if t.startswith("envkit-snapshot/")] == []


@pytest.mark.parametrize("keys", [None, "mine"])
def test_prune_removes_the_image_of_a_capture_that_never_finished(
        load_text: Callable[..., Blueprint], keys: str | None) -> None:
    fake, key = _cut_capture(load_text)
    assert S.prune(fake, keys=None if keys is None else {key}) == [f"image {S.image_tag('db', key)}"]
    assert [t for t in fake.images if t.startswith("envkit-snapshot/")] == []
    assert S.prune(fake, keys={"another"}) == []


def test_a_reset_of_a_run_brought_up_without_its_snapshot_says_why(load_text: Callable[..., Blueprint]) -> None:
    # The blueprint has `snapshot: true`: "add 'snapshot: true' to it" alone sent the user the wrong way.
    fake = FakeBackend(images={"base:1"})
    with api.up(load_text(BLUEPRINT), name="nosnap-1", backend=fake, snapshot=False) as env:
        for services in (("db",), ()):
            with pytest.raises(UsageError, match="brought up with --no-snapshot or --no-seed"):
                env.reset(*services)


def test_a_reset_naming_no_service_resets_every_one_with_a_snapshot(load_text: Callable[..., Blueprint]) -> None:
    # env.reset() (ini `envkit_reset = *`, a bare @pytest.mark.envkit_reset) took the shortcut for services
    # reset before in this process with none named, and returned {} having reset nothing.
    fake = FakeBackend(images={"base:1"})
    try:
        with api.up(load_text(BLUEPRINT.replace("snapshot: true", "snapshot: {reset: restore}")), name="all-1",
                    backend=fake) as env:
            assert list(env.reset()) == ["db"]
            assert list(env.reset()) == ["db"]
    finally:
        for snap in S.list_snapshots(fake):
            S.remove(fake, snap.key)
