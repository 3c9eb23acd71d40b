"""The generic reset path (``envkit.restore``) on the in-memory engine: the state after a reset is the
snapshot's (filesystem, an image's anonymous volume, a volume of the blueprint), the container keeps its
name, address and host ports, nothing of the old one is left, and the other services are untouched."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from contract.backend_contract import tar_of

from envkit import api
from envkit import labels as L
from envkit import reset as reset_module
from envkit import snapshots as S
from envkit.backends import _tar
from envkit.backends.base import VolumeSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.errors import EngineError, NotFound, ServiceFailed
from envkit.restore import settle
from envkit.runs import describe
from envkit.snapshot_plan import image_ids

BLUEPRINT = """
    name: rs
    volumes: {shared: {}}
    services:
      db:
        image: base:1
        ports: [5432]
        volumes: [shared:/shared]
        snapshot: {reset: restore}
      api:
        image: base:1
        depends_on: [db]
"""


def snapshot_of(fake: FakeBackend, bp: Blueprint) -> S.Snapshot:
    """A complete snapshot of db, made by hand: its image holds /etc/seeded; /data was an anonymous
    volume of the image, /shared the blueprint's volume."""
    key = S.service_keys(bp, image_ids(fake, bp, ("db",)), ["db"])["db"]
    tag = S.image_tag("db", key)
    fake.images.add(tag)
    fake.image_files[tag] = {}
    _tar.unpack(fake.image_files[tag], "/etc", tar_of({"seeded": b"image"}))
    mounts = []
    for i, (target, content) in enumerate((("/data", b"anonymous"), ("/shared", b"named")), 1):
        name = S.data_name(key, i)
        fake.create_volume(VolumeSpec(name, ((L.ROLE, "snapshot-data"), (L.SNAPSHOT, key))))
        fake.import_volume(name, [tar_of({"seeded": content})])
        mounts.append((target, name))
    snap = S.Snapshot(key, "db", "rs", tag, tuple(mounts), "restore", "2026-01-01T00:00:00Z")
    fake.create_volume(VolumeSpec(S.manifest_name(key), tuple(sorted(snap.labels().items()))))
    return snap


def read(fake: FakeBackend, container: str, path: str) -> bytes | None:
    try:
        archive = fake.copy_from(container, path)
    except NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read() if member is not None else None


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"base:1"})


def dirty(fake: FakeBackend, container: str) -> None:
    for folder in ("/etc", "/data", "/shared"):
        fake.copy_into(container, folder, tar_of({"seeded": b"dirty", "written": b"by a test"}))


def test_a_reset_gives_back_the_snapshot_in_the_same_name_address_and_ports(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-1", backend=fake) as env:
        before = env.info.replicas("db")[0]
        other = env.info.replicas("api")[0]
        assert read(fake, before.id, "/data/seeded") == b"anonymous"
        dirty(fake, before.id)
        env.reset("db")
        settle()  # the old container's own volume is removed in the background
        after = env.info.replicas("db")[0]
        assert after.id != before.id and after.name == before.name == L.container_name("rs-1", "db", 1)
        assert after.addresses == before.addresses and after.ports == before.ports
        assert dict(after.labels) == dict(before.labels)
        for path, seeded in (("/etc/seeded", b"image"), ("/data/seeded", b"anonymous"), ("/shared/seeded", b"named")):
            assert read(fake, after.id, path) == seeded
        for folder in ("/etc", "/data", "/shared"):
            assert read(fake, after.id, f"{folder}/written") is None
        assert [c.id for c in env.info.replicas("api")] == [other.id]  # the rest of the run is untouched
        # The old container and its own volume are gone; the blueprint's volume is the same one.
        assert before.id not in fake.containers
        data = [m.source for m in after.mounts if m.target == "/data"]
        volumes = {r.name for r in fake.list_resources({L.RUN: "rs-1"}) if r.kind == "volume"}
        assert volumes == {data[0], L.volume_name("rs-1", "shared")}
        assert [m.source for m in after.mounts if m.target == "/shared"] == [L.volume_name("rs-1", "shared")]

        dirty(fake, after.id)
        fake.calls.clear()
        env.reset("db")  # again: the run is not described again (api's container is not even inspected)
        assert ("inspect_container", other.name) not in fake.calls
        settle()
        third = env.info.replicas("db")[0]
        assert read(fake, third.id, "/data/written") is None and read(fake, third.id, "/data/seeded") == b"anonymous"
        assert third.addresses == before.addresses and third.ports == before.ports
        assert len({r.name for r in fake.list_resources({L.RUN: "rs-1"}) if r.kind == "volume"}) == 2
    assert fake.list_resources({L.RUN: "rs-1"}) == []


def test_an_engine_that_cannot_keep_the_address_gets_one_of_its_choice(
        fake: FakeBackend, load_text: Callable[..., Blueprint], monkeypatch: pytest.MonkeyPatch) -> None:
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    start = fake.start_container

    def refuse_fixed(container_id: str) -> None:
        if any(a.address for a in fake.containers[container_id].spec.networks):
            raise EngineError("user specified IP address is supported only when connecting to networks with user "
                              "configured subnets")
        start(container_id)

    monkeypatch.setattr(fake, "start_container", refuse_fixed)
    with api.up(bp, name="rs-2", backend=fake) as env:
        before = env.info.replicas("db")[0]
        env.reset("db")
        after = env.info.replicas("db")[0]
        assert after.running and after.name == before.name and after.ports == before.ports
        assert after.addresses != before.addresses
        assert [c.name for c in fake.list_containers({L.RUN: "rs-2", L.SERVICE: "db"})] == [before.name]


def test_a_reset_that_cannot_make_the_container_names_the_service_and_leaves_no_volume(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(BLUEPRINT)
    snap = snapshot_of(fake, bp)
    with api.up(bp, name="rs-3", backend=fake) as env:
        env.reset("db")
        settle()
        fake.images.discard(snap.image)  # the image went since (`docker image rm -f` by someone else)
        before = {r.name for r in fake.list_resources({L.RUN: "rs-3"}) if r.kind == "volume"}
        with pytest.raises(ServiceFailed, match=r"db.*reset: cannot make its container from the snapshot"):
            env.reset("db")
        assert {r.name for r in fake.list_resources({L.RUN: "rs-3"}) if r.kind == "volume"} == before
        assert not [c for c in fake.containers.values() if ".next-" in c.spec.name]


def test_a_reset_cut_short_after_the_removal_is_finished_by_the_next_one(
        fake: FakeBackend, load_text: Callable[..., Blueprint], monkeypatch: pytest.MonkeyPatch) -> None:
    """The process resetting db is killed once the old container is gone and before the new one takes its
    name: the run then shows the new one (not started, on the same host ports) as db's replica, and the
    next reset makes db again in its place, under its name and on its ports."""
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-5", backend=fake) as env:
        before = env.info.replicas("db")[0]

        def killed(*_: object) -> None:
            raise KeyboardInterrupt

        rename = fake.rename_container
        monkeypatch.setattr(fake, "rename_container", killed)
        with pytest.raises(KeyboardInterrupt):
            env.reset("db")
        monkeypatch.setattr(fake, "rename_container", rename)
        left = describe(fake, "rs-5").replicas("db")
        assert [(c.status, c.ports) for c in left] == [("created", before.ports)]
        assert ".next-" in left[0].name
        env.reset("db")
        settle()
        after = fake.list_containers({L.RUN: "rs-5", L.SERVICE: "db"})
        assert [c.name for c in after] == [before.name]
        assert fake.inspect_container(after[0].id).running
        assert fake.inspect_container(after[0].id).ports == before.ports


def test_another_handle_reaches_the_service_again_after_a_reset_replaced_its_container(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    # `envkit reset` from another process, or another xdist worker's reset of an --envkit-shared run: the
    # handle that had looked at the run before exec'd into (and read the logs of) a container that is gone.
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    fake.log_text["db"] = "db says hello\n"
    with api.up(bp, name="rs-1", backend=fake) as env:
        other = api.attach("rs-1", backend=fake)
        before = other.info.replicas("db")[0].id
        assert other.exec("db", ["true"]).exit_code == 0
        env.reset("db")
        assert other.exec("db", ["true"]).exit_code == 0
        assert other.info.replicas("db")[0].id != before
        other.refresh()
        env.reset("db")
        assert "db says hello" in other.logs("db") and "db says hello" in other.logs()
    assert fake.list_resources({L.RUN: "rs-1"}) == []


def test_a_reset_that_loses_the_name_to_another_processs_reset_gives_way(
        fake: FakeBackend, load_text: Callable[..., Blueprint], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes reset db at once (``envkit reset RUN db --restore`` beside a test's ``env.reset``):
    both saw the same old container, and the other one's new container took the name first. Before, this
    one failed with the engine's name conflict; the service was reset all the same, so it gives way."""
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-7", backend=fake) as env:
        before = env.info.replicas("db")[0]
        rename = fake.rename_container
        winner: list[str] = []

        def elsewhere(container_id: str, name: str) -> None:
            if not winner:  # the other process's reset, finished first: its container under the name, started
                spec = fake.containers[container_id].spec
                winner.append(fake.create_container(replace(spec, name=name)))
                fake.start_container(winner[0])
            rename(container_id, name)

        monkeypatch.setattr(fake, "rename_container", elsewhere)
        env.reset("db")
        settle()
        after = fake.list_containers({L.RUN: "rs-7", L.SERVICE: "db"})
        assert [(c.id, c.name, c.running) for c in after] == [(winner[0], before.name, True)]
        volumes = {r.name for r in fake.list_resources({L.RUN: "rs-7"}) if r.kind == "volume"}
        assert len(volumes) == 3  # the shared one, the winner's fresh one, and the old one (the winner's to remove)


def test_a_reset_whose_container_another_processs_reset_removed_first_waits_for_that_one(
        fake: FakeBackend, load_text: Callable[..., Blueprint], monkeypatch: pytest.MonkeyPatch) -> None:
    """The other process's reset was quicker still: the container this one listed is gone when it looks
    at it. Before, ``inspect container …: No such container``; now it takes the other's replacement."""
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-8", backend=fake) as env:
        before = env.info.replicas("db")[0]
        recipe_for = reset_module._recipe_for
        winner: list[str] = []

        def elsewhere(*args: Any) -> object:  # after this process listed db's container, before it inspects it
            recipe = recipe_for(*args)
            spec = fake.containers[before.id].spec  # the other reset: the old container out, its own in
            fake.remove_container(before.id, 0)
            winner.append(fake.create_container(spec))
            fake.start_container(winner[0])
            return recipe

        monkeypatch.setattr(reset_module, "_recipe_for", elsewhere)
        env.reset("db", path="restore")
        after = fake.list_containers({L.RUN: "rs-8", L.SERVICE: "db"})
        assert [(c.id, c.name, c.running) for c in after] == [(winner[0], before.name, True)]


def test_a_template_swap_killed_by_another_processs_restore_counts_as_the_reset() -> None:
    """`envkit reset RUN db` (template path) while a test process resets db with ``path="restore"``: the
    swap's psql dies with the old container (exit 137). The new container from the same snapshot is the
    seeded state, so the swap's failure is not the reset's once that container's server answers; a swap
    that failed on a container still there and serving is an error as before."""
    from envkit.backends.base import ContainerSpec, ExecResult
    from envkit.pgtemplate import Postgres
    from envkit.reset import _replaced_by_restore

    fake = FakeBackend(images={"pg:1"})
    labels = ((L.MANAGED, "true"), (L.RUN, "rs-9"), (L.SERVICE, "db"), (L.SNAPSHOT, "ab" * 32))
    old_id = fake.create_container(ContainerSpec("envkit-rs-9-db-1", "pg:1", labels, ()))
    fake.start_container(old_id)
    old = fake.inspect_container(old_id)
    assert not _replaced_by_restore(fake, old, Postgres("postgres"), timeout=5)  # still serving
    fake.remove_container(old_id, 0)
    new_id = fake.create_container(ContainerSpec("envkit-rs-9-db-1", "pg:1", labels, ()))
    fake.start_container(new_id)
    assert _replaced_by_restore(fake, old, Postgres("postgres"), timeout=5)
    fake.exec_results["envkit-rs-9-db-1"] = ExecResult(2, "no server")  # gone, and nothing serves in its place
    assert not _replaced_by_restore(fake, old, Postgres("postgres"), timeout=0.5)


def test_a_stopped_service_keeps_its_host_ports_through_a_reset(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    # A stopped container publishes nothing (`envkit stop`, a `stop` fault): the reset took no port from it,
    # so the new container got another host port and the run's outputs named a port nobody listens on.
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-6", backend=fake) as env:
        before = env.info.replicas("db")[0]
        fake.stop_container(before.id, 1)
        env.reset("db")
        after = env.refresh().replicas("db")[0]
        assert after.id != before.id and after.running and after.ports == before.ports
        assert env.outputs == api.attach("rs-6", backend=fake).outputs


def test_a_stopped_service_keeps_the_address_a_reset_fixed(fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    # A stopped container has no address; one a reset made keeps the one it was made with in its configuration.
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-7", backend=fake) as env:
        first = env.info.replicas("db")[0]
        env.reset("db")
        fixed = env.refresh().replicas("db")[0]
        assert fixed.fixed == first.addresses  # the reset fixed it
        fake.stop_container(fixed.id, 1)
        assert env.refresh().replicas("db")[0].addresses == {}
        env.reset("db")
        again = fake.containers[env.refresh().replicas("db")[0].id]
        assert {a.network: a.address for a in again.spec.networks} == first.addresses  # made with it, not without


def test_a_fault_on_the_service_is_put_on_its_new_container(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    # The restore path replaces the container: a pause or a disconnect held by the engine on the old one
    # went with it, while `env.faults()` and `envkit status` still called it active and heal did nothing.
    from envkit.faults import apply as faults

    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-7", backend=fake) as env:
        notes: list[str] = []
        ports = env.info.replicas("db")[0].ports
        for kind, held in (("pause", lambda c: c.status == "paused"), ("disconnect", lambda c: not c.addresses),
                           ("stop", lambda c: c.status == "exited")):
            record = faults.apply(fake, "rs-7", "db", kind)
            env.reset("db", on_event=lambda e: notes.append(e.message) if e.kind == "note" else None)
            new = env.refresh().replicas("db")[0]
            assert held(fake.inspect_container(new.id)), kind
            (active,) = faults.faults(fake, "rs-7")
            assert active.id == record.id and active.undo[0]["container"] == new.id and active.generation == 1
            assert notes[-1] == f"fault {record.id} ({kind} db) applied again to the reset replica"
            faults.heal(fake, "rs-7")
            assert fake.inspect_container(new.id).running and fake.inspect_container(new.id).addresses, kind
            assert env.refresh().replicas("db")[0].ports == ports


def test_exec_after_the_heal_of_a_stop_that_a_reset_kept_reaches_the_service(
        fake: FakeBackend, load_text: Callable[..., Blueprint]) -> None:
    # The handle had looked at the run while the fault held db down (a reset makes it look again); after
    # the heal, exec refused with "exited ... cannot run a command in it" from that stale look.
    bp = load_text(BLUEPRINT)
    snapshot_of(fake, bp)
    with api.up(bp, name="rs-8", backend=fake) as env:
        with env.fault("db", "stop"):
            env.reset("db")
            assert env.info.replicas("db")[0].status == "exited"
        assert env.exec("db", ["true"]).exit_code == 0
        assert env.logs("db") is not None


def test_rebuild_of_the_changed_services_leaves_an_unchanged_service_started_from_its_snapshot(
        fake: FakeBackend, write_blueprint: Callable[..., Path]) -> None:
    # A container from a snapshot is made from the snapshot's image, not the build's tag: `envkit rebuild
    # RUN` took every such service for changed and made it again from the plain image, throwing away its
    # seeded state (and `envkit reset` then said it was not started with a snapshot).
    folder = write_blueprint("""
        name: rb
        services:
          db:
            build: ./db
            snapshot: true
    """, {"db/Dockerfile": "FROM debian:bookworm-slim\n"})
    with api.up(folder, name="rb-1", backend=fake):
        pass  # the first run captures
    with api.up(folder, name="rb-2", backend=fake) as env:
        before = env.info.replicas("db")[0]
        assert before.labels[L.SNAPSHOT]
        assert env.rebuild().plan.services == ()  # nothing changed: nothing to do
        (folder / "db" / "Dockerfile").write_text("FROM debian:bookworm-slim\nENV V=2\n")
        result = env.rebuild(timeout=0)
        assert result.plan.services == ("db",)  # a change of code is rebuilt, and the loss is said
        assert any(n.startswith(f"db was started from snapshot {before.labels[L.SNAPSHOT][:16]}; its new container "
                                "is made from the image, without the seeded state") for n in result.plan.notes)
