"""envkit's built images (envkit.prune) on the in-memory engine: only envkit's own, never one in use,
the newest tag of each build context kept unless --all, and a dry run that changes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends.base import BuildSpec, ContainerSpec, NetworkAttachment, NetworkSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import load
from envkit.prune import built_images, prune, repositories_of

from .conftest import WriteBlueprint


def build(fake: FakeBackend, tag: str, digest: str | None = None) -> None:
    labels = ((L.CONTEXT_HASH, digest if digest is not None else tag.rsplit(":", 1)[1]),)
    fake.build_image(BuildSpec(tag, Path("ctx"), "Dockerfile", (), None, labels), lambda line: None)
    time.sleep(0.002)  # distinct creation times: the newest is the last built


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"postgres:16"})  # pulled: not envkit's
    for n in range(1, 4):
        build(fake, f"envkit/shop-app:{n:016x}")
    build(fake, "envkit/shop-db:00000000000000aa")
    build(fake, "envkit/fault-proxy:77587c807392603c", "77587c807392603c" + "f" * 48)  # full hash in the label
    build(fake, "someone/else:0000000000000001")  # carries the label, but not in envkit's namespace
    build(fake, "envkit/shop-app:latest", "0000000000000003")  # a tag that is not the hash: not a build of envkit's
    fake.create_network(NetworkSpec("net"))
    # An old tag a container (stopped, of any tool) still uses.
    ident = fake.create_container(ContainerSpec("user-box", "envkit/shop-app:0000000000000001", (),
                                                (NetworkAttachment("net"),)))
    assert ident
    return fake


def test_only_envkits_built_images_are_listed_newest_first(fake: FakeBackend) -> None:
    rows = [(i.tag, i.newest, i.in_use) for i in built_images(fake)]
    assert rows == [
        ("envkit/fault-proxy:77587c807392603c", True, False),
        ("envkit/shop-app:0000000000000003", True, False),
        ("envkit/shop-app:0000000000000002", False, False),
        ("envkit/shop-app:0000000000000001", False, True),
        ("envkit/shop-db:00000000000000aa", True, False),
    ]


def test_a_dry_run_changes_nothing(fake: FakeBackend) -> None:
    images = set(fake.images)
    result = prune(fake, dry_run=True)
    assert [i.tag for i in result.removed] == ["envkit/shop-app:0000000000000002"]
    assert fake.images == images and not [c for c in fake.calls if c[0] == "remove_image"]


def test_prune_keeps_the_newest_of_each_context_and_what_is_in_use(fake: FakeBackend) -> None:
    result = prune(fake)
    assert [i.tag for i in result.removed] == ["envkit/shop-app:0000000000000002"]
    assert result.freed == 1000
    assert "envkit/shop-app:0000000000000002" not in fake.images
    assert {"envkit/shop-app:0000000000000001", "envkit/shop-app:0000000000000003", "postgres:16",
            "someone/else:0000000000000001", "envkit/shop-app:latest"} <= fake.images
    assert prune(fake).removed == []  # nothing left to do


def test_all_removes_the_newest_too_but_never_what_is_in_use_or_not_envkits(fake: FakeBackend) -> None:
    result = prune(fake, all_tags=True)
    assert sorted(i.tag for i in result.removed) == [
        "envkit/fault-proxy:77587c807392603c", "envkit/shop-app:0000000000000002",
        "envkit/shop-app:0000000000000003", "envkit/shop-db:00000000000000aa"]
    assert [i.tag for i in result.kept] == ["envkit/shop-app:0000000000000001"]
    assert fake.images == {"postgres:16", "someone/else:0000000000000001", "envkit/shop-app:latest",
                           "envkit/shop-app:0000000000000001"}


def test_a_blueprint_limits_prune_to_its_own_build_contexts(fake: FakeBackend, write_blueprint: WriteBlueprint) -> None:
    folder = write_blueprint("""
        name: shop
        services:
          db: {build: ./db}
    """, {"db/Dockerfile": "FROM x\n"})
    repositories = repositories_of(load(folder, {}))
    assert repositories == {"envkit/shop-db"}
    result = prune(fake, all_tags=True, repositories=repositories)
    assert [i.tag for i in result.removed] == ["envkit/shop-db:00000000000000aa"]
    assert "envkit/shop-app:0000000000000002" in fake.images
