"""Snapshots and resets on the real engine: capture, hit, miss, concurrent misses, independence, reset.

Every test makes its snapshots under a key of its own (a random TOKEN in the service's environment) and
removes them (the ``snapshots_made`` fixture asserts it); the suite's guard checks nothing else is left.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from contract.backend_contract import tar_of

import envkit
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends import Backend
from envkit.backends.base import VolumeSpec
from envkit.backends.docker import DockerBackend
from envkit.errors import EngineError

from .conftest import ROOT, envkit_cli, resources_of

# A service that, like the official postgres image, declares a volume and initialises it at first start;
# it also writes into its own filesystem. A fresh start draws a new random value; a start from a
# snapshot finds the captured one.
STORE = """\
FROM debian:bookworm-slim
VOLUME /data
CMD ["sh", "-c", "[ -f /data/init ] || { od -An -N8 -tx1 /dev/urandom | tr -d ' \\\\n' > /data/init; \\
cp /data/init /etc/seeded; }; trap 'exit 0' TERM; sleep infinity & wait"]
"""

BLUEPRINT = """\
name: snaptest
volumes: {named: {}}
services:
  store:
    build: ./store
    snapshot: true
    environment: {TOKEN: "${TOKEN}", FLAVOUR: "${FLAVOUR:-a}"}
    volumes: [named:/named]
    ready: {exec: [test, -f, /data/init]}
"""


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "Dockerfile").write_text(STORE, encoding="utf-8")
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    return tmp_path


@pytest.fixture
def token(backend: Backend) -> Iterator[str]:
    """A token of this test's own; every snapshot of it is removed afterwards (and that is checked)."""
    value = secrets.token_hex(6)
    yield value
    made = own_snapshots(backend, value)
    for key in made:
        S.remove(backend, key)
    assert not [r.name for r in backend.list_resources({L.SNAPSHOT: None}) if r.labels[L.SNAPSHOT] in made]


def own_snapshots(backend: Backend, token: str) -> set[str]:
    """The keys of the snapshots made by a test with ``token``: those whose committed image has TOKEN=token in
    its environment (the service's, committed with it). Snapshots that other tests or sessions make on this
    engine meanwhile are theirs: removing every key that appeared while the test ran took theirs too."""
    assert isinstance(backend, DockerBackend)
    mine = set()
    for image in backend.list_images({L.SNAPSHOT: None, L.ROLE: "snapshot"}):
        try:
            env = (backend.api.inspect_image(image.id).get("Config") or {}).get("Env") or []
        except docker.errors.NotFound:  # another process removed its snapshot meanwhile
            continue
        if f"TOKEN={token}" in env:
            mine.add(image.labels[L.SNAPSHOT])
    return mine


def read(env: envkit.Environment, path: str) -> str:
    result = env.exec("store", ["cat", path])
    return result.output.strip() if result.exit_code == 0 else f"<missing: {result.output.strip()}>"


def test_capture_then_hit_restores_filesystem_and_volumes(backend: Backend, blueprint: Path, token: str) -> None:
    env_vars = {"TOKEN": token}
    with envkit.up(blueprint, env=env_vars, backend=backend) as first:
        seeded = read(first, "/data/init")
        assert read(first, "/etc/seeded") == seeded
        first.exec("store", ["sh", "-c", "echo named > /named/file"])  # after the capture: not in it
        key = first.info.replicas("store")[0].labels[L.SNAPSHOT]
    snap = S.find(backend, key)
    assert snap is not None and [t for t, _ in snap.mounts] == ["/data", "/named"]
    events: list[envkit.Event] = []
    with envkit.up(blueprint, env=env_vars, backend=backend, on_event=events.append) as second:
        assert read(second, "/data/init") == seeded  # the anonymous volume, restored
        assert read(second, "/etc/seeded") == seeded  # the filesystem, restored
        assert read(second, "/named/file").startswith("<missing")
        assert not any(e.action == "snapshot" for e in events)  # a hit: no capture
        assert any(e.detail == "hit" for e in events)
        second.exec("store", ["sh", "-c", "echo dirty > /data/init; echo dirty > /etc/seeded"])
        run_id = second.run_id
    assert resources_of(backend, run_id) == []
    with envkit.up(blueprint, env=env_vars, backend=backend) as third:  # the write did not reach the snapshot
        assert read(third, "/data/init") == seeded and read(third, "/etc/seeded") == seeded
    assert S.find(backend, key) is not None  # runs' teardown leaves the snapshot


def test_a_volume_from_a_snapshot_is_an_overlay_of_its_data_held_until_the_run_is_removed(
        backend: Backend, blueprint: Path, token: str) -> None:
    # Copy-on-write: made in milliseconds whatever the size; writes stay in the run; nothing the engine
    # may prune while the run lives; nothing left after it.
    assert isinstance(backend, DockerBackend)
    api = backend.api
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as first:
        seeded = read(first, "/data/init")
        key = first.info.replicas("store")[0].labels[L.SNAPSHOT]
    snap = S.find(backend, key)
    assert snap is not None
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as one, \
            envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as other:
        run = one.run_id
        volumes = {r.name: api.inspect_volume(r.name) for r in backend.list_resources({L.MANAGED: "true", L.RUN: run})
                   if r.kind == "volume"}
        overlays = {n for n, v in volumes.items() if (v.get("Options") or {}).get("type") == "overlay"}
        assert overlays == {f"envkit-{run}-store-snapshot-1", f"envkit-{run}-named"}  # the image's /data, and named
        for name in overlays:
            assert f"{name}-cow-upper" in volumes and f"{name}-cow-work" in volumes
        one.exec("store", ["sh", "-c", "echo dirty > /data/init; echo mine > /named/x"])
        assert read(other, "/data/init") == seeded and read(other, "/named/x").startswith("<missing")
        with pytest.raises(envkit.EnvkitError, match="in use"):  # held: `docker volume prune` and rm leave it
            backend._once("remove", lambda: api.remove_volume(f"envkit-{run}-store-snapshot-1-cow-upper"))
        with pytest.raises(envkit.EnvkitError, match="in use"):  # and the snapshot's data under it
            backend._once("remove", lambda: api.remove_volume(snap.mounts[0][1]))
        assert [c.name for c in one.info.containers] == [f"envkit-{run}-store-1"]  # holders are no replicas
        one.reset("store")
        assert read(one, "/data/init") == seeded and read(one, "/named/x").startswith("<missing")
    assert resources_of(backend, run) == []
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as third:
        assert read(third, "/data/init") == seeded  # the writes never reached the snapshot


def test_where_the_overlay_does_not_mount_the_data_is_copied_and_no_part_is_left(
        backend: Backend, tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(backend, DockerBackend)
    source = VolumeSpec(f"envkit-test-cow-{token}", ((L.MANAGED, "true"), ("io.envkit.test", token)))
    target = VolumeSpec(f"envkit-test-cow-{token}-run", source.labels)
    backend.create_volume(source)
    try:
        backend.import_volume(source.name, [tar_of({"rows": b"seeded\n"})])

        def no_overlayfs(*_: object) -> bytes:  # as a rootless engine answers the first mount
            raise EngineError("error while mounting volume: invalid argument")

        engine = DockerBackend()
        monkeypatch.setattr(engine, "_root", no_overlayfs)
        engine.fill_volume(target, source.name)
        assert engine._cow is False  # not tried again by this process
        assert (backend.api.inspect_volume(target.name).get("Options") or {}) == {}  # a plain volume, copied
        assert sorted(r.name for r in backend.list_resources({"io.envkit.test": token})) == sorted(
            [source.name, target.name])  # no holder, no upper or work directory left
        assert b"seeded" in b"".join(backend.export_volume(target.name))
    finally:
        for name in (target.name, source.name):
            backend.remove_volume(name)


OWNED = """\
FROM debian:bookworm-slim
RUN mkdir -p /data && chown 101:102 /data && chmod 700 /data
VOLUME /data
CMD ["sh", "-c", "[ -f /data/init ] || echo seeded > /data/init; trap 'exit 0' TERM; sleep infinity & wait"]
"""


def test_a_restored_volume_keeps_the_owner_and_mode_of_its_root(backend: Backend, tmp_path: Path, token: str) -> None:
    # PostgreSQL refuses a data directory of the wrong owner or mode: the overlay's root must be the data's.
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "Dockerfile").write_text(OWNED, encoding="utf-8")
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT.replace("    volumes: [named:/named]\n", ""), encoding="utf-8")
    with envkit.up(tmp_path, env={"TOKEN": token}, backend=backend) as first:
        seeded = first.exec("store", ["stat", "-c", "%u:%g %a", "/data"]).output.strip()
    assert seeded == "101:102 700"
    with envkit.up(tmp_path, env={"TOKEN": token}, backend=backend) as second:
        assert second.exec("store", ["stat", "-c", "%u:%g %a", "/data"]).output.strip() == seeded
        second.reset("store")
        assert second.exec("store", ["stat", "-c", "%u:%g %a", "/data"]).output.strip() == seeded


def test_a_changed_configuration_misses(backend: Backend, blueprint: Path, token: str) -> None:
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as first:
        a = read(first, "/data/init")
        key_a = first.info.replicas("store")[0].labels[L.SNAPSHOT]
    with envkit.up(blueprint, env={"TOKEN": token, "FLAVOUR": "b"}, backend=backend) as second:
        assert read(second, "/data/init") != a  # a new key: seeded afresh, never the stale snapshot
        assert second.info.replicas("store")[0].labels[L.SNAPSHOT] != key_a


def test_reset_restores_the_snapshot_and_touches_no_other_run(backend: Backend, blueprint: Path, token: str) -> None:
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as one, \
            envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as other:
        seeded = read(one, "/data/init")
        one.exec("store", ["sh", "-c", "echo dirty > /data/init; echo dirty > /etc/seeded; echo x > /named/x"])
        other.exec("store", ["sh", "-c", "echo mine > /named/x"])
        port_before = one.info.replicas("store")[0].name
        address = one.info.replicas("store")[0].addresses
        taken = one.reset("store")
        assert taken["store"] > 0
        assert read(one, "/data/init") == seeded and read(one, "/etc/seeded") == seeded
        assert read(one, "/named/x").startswith("<missing")
        assert one.info.replicas("store")[0].name == port_before
        assert one.info.replicas("store")[0].addresses == address  # peers find it at the same address
        assert read(other, "/named/x") == "mine"  # the other run is untouched


def test_concurrent_misses_capture_once(backend: Backend, blueprint: Path, token: str) -> None:
    script = textwrap.dedent(f"""
        import sys, envkit
        events = []
        with envkit.up({str(blueprint)!r}, env={{"TOKEN": {token!r}}}, on_event=events.append) as env:
            value = env.exec("store", ["cat", "/data/init"]).output.strip()
            print(value, "captured" if any(e.action == "snapshot" and e.phase == "done" for e in events) else "hit")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = sorted(o[0].split() for o in outs)
    assert results[0][0] == results[1][0]  # both see the one captured state
    assert sorted(r[1] for r in results) == ["captured", "hit"]


def test_a_snapshot_image_removed_before_the_create_seeds_and_captures_again(backend: Backend, blueprint: Path,
                                                                            token: str) -> None:
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as first:
        captured = read(first, "/data/init")
        key = first.info.replicas("store")[0].labels[L.SNAPSHOT]
    snap = S.find(backend, key)
    assert snap is not None
    events: list[envkit.Event] = []

    def hook(event: envkit.Event) -> None:  # another process removes the image between the look-up and the create
        events.append(event)
        if event.kind == "plan" and len([e for e in events if e.kind == "plan"]) == 1:
            backend.remove_image(snap.image)

    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend, on_event=hook) as second:
        assert read(second, "/data/init") != captured  # seeded afresh: a new random value
        assert [e.detail for e in events if e.detail in ("hit", "snapshot gone", "miss")] == ["hit", "snapshot gone",
                                                                                              "miss"]
        assert read(second, "/etc/seeded") == read(second, "/data/init")
    again = S.find(backend, key)
    assert again is not None and backend.image_id(again.image)  # captured again


def test_prune_removes_only_snapshots(backend: Backend, blueprint: Path, token: str) -> None:
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as env:
        key = env.info.replicas("store")[0].labels[L.SNAPSHOT]
    assert S.find(backend, key) is not None
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as env:
        before = sorted(resources_of(backend, env.run_id))
        removed = S.prune(backend, older_than=3600, keys={key})  # too young: kept
        assert not [r for r in removed if key[:16] in r]
        with pytest.raises(envkit.EngineError):
            S.remove(backend, key)  # a run's container uses its image: refused, nothing removed
        assert S.find(backend, key) is not None
        assert sorted(resources_of(backend, env.run_id)) == before
    removed = S.prune(backend, keys={key})  # only its own: other processes' snapshots on this engine stay
    assert any(key[:16] in r for r in removed)
    assert S.find(backend, key) is None
    assert not backend.list_resources({L.SNAPSHOT: key})


# An image that initialises the way the official database images do: at its first start (an empty declared
# VOLUME) it runs the scripts in /docker-entrypoint-initdb.d, and a later start of the same data skips them.
INITDB_IMAGE = """\
FROM debian:bookworm-slim
VOLUME /data
CMD ["sh", "-c", "[ -f /data/ready ] || { for f in /docker-entrypoint-initdb.d/*.sh; do sh \\"$f\\"; done; \
echo init >> /data/runs; touch /data/ready; }; trap 'exit 0' TERM; sleep infinity & wait"]
"""
INITDB_COMPOSE = """\
services:
  db:
    build: ./db
    environment: {TOKEN: "${TOKEN}"}
    volumes: ["./initdb:/docker-entrypoint-initdb.d:ro"]
    healthcheck: {test: [CMD, test, -f, /data/ready], interval: 1s}
"""


def test_a_compose_file_seeded_through_initdb_scripts_starts_from_a_snapshot_with_the_flag(
        backend: Backend, tmp_path: Path, token: str) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "Dockerfile").write_text(INITDB_IMAGE, encoding="utf-8")
    (tmp_path / "initdb").mkdir()
    script = tmp_path / "initdb" / "10-rows.sh"
    script.write_text("od -An -N8 -tx1 /dev/urandom | tr -d ' \\n' > /data/rows\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(INITDB_COMPOSE, encoding="utf-8")
    imported = envkit_cli("import", str(tmp_path / "compose.yaml"), "-o", str(tmp_path / "blueprint.yaml"), check=True)
    assert "--snapshot" in imported.stderr + imported.stdout  # the import says how to keep the initialisation
    with envkit.up(tmp_path, env={"TOKEN": token}, backend=backend, snapshot=True) as first:
        rows = first.exec("db", ["cat", "/data/rows"]).output.strip()
        key = first.info.replicas("db")[0].labels[L.SNAPSHOT]
    assert len(rows) == 16 and S.find(backend, key) is not None
    events: list[envkit.Event] = []
    with envkit.up(tmp_path, env={"TOKEN": token}, backend=backend, snapshot=True, on_event=events.append) as second:
        assert any(e.detail == "hit" for e in events)
        assert second.exec("db", ["cat", "/data/rows"]).output.strip() == rows
        assert second.exec("db", ["cat", "/data/runs"]).output.split() == ["init"]  # the scripts did not run again
        second.exec("db", ["sh", "-c", "echo dirty > /data/rows"])
        second.reset("db")
        assert second.exec("db", ["cat", "/data/rows"]).output.strip() == rows
    ran = envkit_cli("run", "--snapshot", "--progress", "plain", str(tmp_path), "--", "true", env={"TOKEN": token},
                     check=True)  # in CI, the same through `envkit run`
    assert f"starting from snapshot {key[:16]}" in ran.stderr
    script.write_text(script.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    with envkit.up(tmp_path, env={"TOKEN": token}, backend=backend, snapshot=True) as third:  # a changed script
        assert third.info.replicas("db")[0].labels[L.SNAPSHOT] != key
        assert third.exec("db", ["cat", "/data/rows"]).output.strip() != rows


SHOP = ROOT / "blueprints" / "shop"


@pytest.fixture(scope="module")
def shop(backend: Backend) -> Iterator[envkit.Environment]:
    before = {r.labels[L.SNAPSHOT] for r in backend.list_resources({L.SNAPSHOT: None})}
    keys: set[str] = set()
    try:
        with envkit.up(SHOP, snapshot=["db"], backend=backend) as env:
            keys = {r.labels[L.SNAPSHOT] for r in env.info.replicas("db") if L.SNAPSHOT in r.labels}
            yield env
    finally:
        # What it made only (another process's snapshots on this engine are not ours), or, when up
        # failed before the run could say its key, what appeared meanwhile.
        made = keys or {r.labels[L.SNAPSHOT] for r in backend.list_resources({L.SNAPSHOT: None})}
        for key in made - before:
            S.remove(backend, key)


def orders(env: envkit.Environment) -> int:
    out = env.exec("db", ["psql", "-X", "-At", "-U", "shop", "-d", "shop", "-c", "SELECT count(*) FROM orders"])
    return int(out.output.strip())


@pytest.mark.parametrize("path", [None, "restore"], ids=["template", "restore"])
def test_reset_restores_the_seeded_rows_and_the_api_keeps_answering(shop: envkit.Environment, path: str | None) -> None:
    from .test_shop import http

    seeded = orders(shop)
    assert seeded >= 100_000
    sql = "INSERT INTO orders (customer_id, amount_cents, status) SELECT 1, g, 'pending' FROM generate_series(1, 1000) g"
    assert shop.exec("db", ["psql", "-X", "-q", "-U", "shop", "-d", "shop", "-c", sql]).exit_code == 0
    assert orders(shop) == seeded + 1000
    events: list[envkit.Event] = []
    shop.reset("db", path=path, on_event=events.append)
    assert orders(shop) == seeded
    done = [e for e in events if e.action == "reset" and e.phase == "done"]
    assert done and done[0].detail == ("template databases" if path is None else "restored from the snapshot")
    api = shop.outputs["API_URL"]
    assert http("GET", f"{api}/health")[0] == 200
    status, body = http("POST", f"{api}/orders", {"email": "after-reset@example.com", "amount_cents": 1200})
    assert status in (201, 402), body
    assert orders(shop) == seeded + 1
    shop.reset("db")  # the next test starts from the seeded rows again
    assert orders(shop) == seeded


def test_a_reset_from_another_process_ends_held_sessions_and_this_process_goes_on(shop: envkit.Environment) -> None:
    import psycopg

    seeded = orders(shop)
    shop.reset("db")  # this process keeps a psql in the container from here on
    with psycopg.connect(shop.outputs["DATABASE_URL"], connect_timeout=5) as held:
        held.execute("INSERT INTO orders (customer_id, amount_cents, status) SELECT 1, g, 'pending' "
                     "FROM generate_series(1, 1000) g")
        held.commit()
        assert orders(shop) == seeded + 1000
        other = envkit_cli("reset", shop.run_id, "db")  # labels are all it has
        assert other.returncode == 0, other.stderr
        assert "db reset in" in other.stderr
        assert orders(shop) == seeded
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")  # the reset ended its session: a client reconnects
    with psycopg.connect(shop.outputs["DATABASE_URL"], connect_timeout=5) as conn:
        conn.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders LIMIT 10)")
    assert orders(shop) == seeded - 10
    shop.reset("db")  # through this process's kept session, after the other process's swap
    assert orders(shop) == seeded


def test_a_reset_cut_short_before_the_rename_is_finished_by_the_next_one(
        backend: Backend, blueprint: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between the old container's removal and the new one taking its name, a generic reset leaves
    only the new container (``NAME.next-HEX``, never started): the run shows it as the replica, on the
    host port the outputs name, and the next reset makes the service again under its name and port."""
    text = BLUEPRINT.replace("    ready:", "    ports: [7000]\n    ready:")
    (blueprint / "blueprint.yaml").write_text(text, encoding="utf-8")
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as env:
        seeded = read(env, "/data/init")
        before = env.info.replicas("store")[0]

        def killed(*_: object) -> None:
            raise KeyboardInterrupt

        rename = backend.rename_container
        monkeypatch.setattr(backend, "rename_container", killed)
        with pytest.raises(KeyboardInterrupt):
            env.reset("store")
        monkeypatch.setattr(backend, "rename_container", rename)
        left = envkit.attach(env.run_id, backend=backend).info.replicas("store")
        assert [(".next-" in c.name, c.status, c.ports) for c in left] == [(True, "created", before.ports)]
        env.reset("store")
        after = env.info.replicas("store")
        assert [(c.name, c.running, c.ports) for c in after] == [(before.name, True, before.ports)]
        assert read(env, "/data/init") == seeded
        assert not [c.name for c in backend.list_containers({L.RUN: env.run_id}) if ".next-" in c.name]


def test_a_capture_cut_short_before_its_manifest_leaves_an_image_that_rm_removes(backend: Backend, tmp_path: Path,
                                                                                token: str) -> None:
    # The process killed between the commit and the manifest: with no volume to copy, the committed image
    # is all that is left, and only its own labels name it (`snapshots rm KEY` said "no snapshot KEY").
    class DiesBeforeTheManifest(DockerBackend):
        def create_volume(self, spec: VolumeSpec) -> str:
            if dict(spec.labels).get(L.ROLE) == "snapshot":
                raise EngineError("killed")
            return super().create_volume(spec)

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep infinity & wait\"]\n", encoding="utf-8")
    (tmp_path / "blueprint.yaml").write_text(
        f"name: snapcut\nservices:\n  plain: {{build: ./plain, snapshot: true, environment: {{TOKEN: {token}}}}}\n",
        encoding="utf-8")
    dying = DiesBeforeTheManifest(dict(os.environ))
    try:
        with pytest.raises(EngineError, match="killed"):
            envkit.up(tmp_path, name=f"snapcut-{token}", backend=dying)
    finally:
        dying.close()
    left = [i for i in backend.list_images({L.SNAPSHOT: None, L.ROLE: "snapshot"})
            if i.labels.get(L.RUN) == f"snapcut-{token}"]
    assert len(left) == 1
    key = left[0].labels[L.SNAPSHOT]
    assert key not in {s.key for s in S.list_snapshots(backend)}  # never used: incomplete
    result = envkit_cli("snapshots", "rm", key[:16])
    assert result.returncode == 0, result.stderr
    assert not backend.image_exists(S.image_tag("plain", key))


ATTRIBUTES = """\
name: pgattrs
services:
  db:
    build: ./postgres
    environment: {{TOKEN: "{token}"}}
    ready: {{exec: [pg_isready, -h, 127.0.0.1, -U, shop]}}
    snapshot: true
    seed:
      - sql:
          user: postgres
          inline: |
            CREATE ROLE reader LOGIN;
            REVOKE CONNECT ON DATABASE shop FROM PUBLIC;
            GRANT CONNECT ON DATABASE shop TO shop;
            ALTER DATABASE shop SET app.mode = 'seeded';
            ALTER ROLE shop IN DATABASE shop SET statement_timeout = '12s';
            ALTER DATABASE shop CONNECTION LIMIT 40;
            COMMENT ON DATABASE shop IS 'the shop';
"""


def test_a_template_reset_keeps_the_database_privileges_settings_and_comment(
        backend: Backend, tmp_path: Path, token: str) -> None:
    """CREATE DATABASE ... TEMPLATE copies the tables, not the database's own attributes: before, the
    first reset let PUBLIC connect again and dropped its ``ALTER DATABASE ... SET`` settings. And a
    database a test made (a tenant's) outlived the reset, so the next test's CREATE DATABASE failed."""
    shutil.copytree(SHOP / "images" / "postgres", tmp_path / "postgres")  # the shop's image: built already
    (tmp_path / "blueprint.yaml").write_text(ATTRIBUTES.format(token=token), encoding="utf-8")

    def attributes(env: envkit.Environment) -> list[str]:
        sql = ("SELECT (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(d.datacl) x), d.datconnlimit, "
               "shobj_description(d.oid, 'pg_database'), "
               "(SELECT string_agg(coalesce(r.rolname, '*') || ':' || array_to_string(s.setconfig, ','), ' ' "
               "ORDER BY r.rolname NULLS FIRST) FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole "
               "WHERE s.setdatabase = d.oid) FROM pg_database d WHERE d.datname = 'shop'")
        out = env.exec("db", ["psql", "-X", "-At", "-U", "postgres", "-d", "postgres", "-c", sql])
        reader = env.exec("db", ["psql", "-X", "-At", "-U", "reader", "-d", "shop", "-c", "SELECT 1"])
        return [out.output.strip(), "reader connects" if reader.exit_code == 0 else "reader refused"]

    seeded = ["=T/shop,shop=CTc/shop|40|the shop|*:app.mode=seeded shop:statement_timeout=12s", "reader refused"]
    with envkit.up(tmp_path, backend=backend) as env:
        assert attributes(env) == seeded
        for _ in range(2):  # the copy made at capture, then one the refill made
            made = env.exec("db", ["psql", "-X", "-q", "-U", "postgres", "-c", "CREATE DATABASE tenant_1"])
            assert made.exit_code == 0, made.output  # a database the test makes is not the seeded state
            env.reset("db")
            assert attributes(env) == seeded
            listed = env.exec("db", ["psql", "-X", "-At", "-U", "postgres", "-c",
                                     "SELECT datname FROM pg_database WHERE datname = 'tenant_1'"])
            assert listed.output.strip() == ""


def test_two_processes_resetting_the_same_service_at_once_both_succeed(
        backend: Backend, blueprint: Path, token: str) -> None:
    """Both see the same old container; one's new container takes the name (or removes the old one) first.
    Before, the other failed: Docker 20.10's 500 on the rename, or `inspect container: No such container`."""
    with envkit.up(blueprint, env={"TOKEN": token}, backend=backend) as env:
        seeded = read(env, "/data/init")
        exe = Path(sys.executable).with_name("envkit")
        for _ in range(3):
            env.exec("store", ["sh", "-c", "echo dirty > /data/init"])
            both = [subprocess.Popen([str(exe), "reset", env.run_id, "store"], stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "TOKEN": token}) for _ in range(2)]
            errors = [p.communicate(timeout=120)[1] for p in both]
            assert [p.returncode for p in both] == [0, 0], errors
            replicas = env.info.replicas("store")
            assert len(replicas) == 1 and replicas[0].running
            assert read(env, "/data/init") == seeded
        listed = backend.list_containers({L.RUN: env.run_id})
        service = [c for c in listed if c.labels.get(L.ROLE) != "holder"]
        assert [c.name for c in service] == [replicas[0].name]
        # Each overlay volume's holder belongs to a volume the replica mounts: the loser left none behind.
        mounted = {m.source for m in backend.inspect_container(service[0].id).mounts if m.type == "volume"}
        assert {c.name.removesuffix("-cow") for c in listed if c.labels.get(L.ROLE) == "holder"} <= mounted


def test_a_template_reset_beside_another_processs_restore_succeeds(
        backend: Backend, tmp_path: Path, token: str) -> None:
    """`envkit reset RUN db` while another process resets db with --restore: before, the template swap's
    psql died with the old container (`psql exited with code 137`) whenever the two met."""
    shutil.copytree(SHOP / "images" / "postgres", tmp_path / "postgres")
    (tmp_path / "blueprint.yaml").write_text(ATTRIBUTES.format(token=token), encoding="utf-8")
    exe = Path(sys.executable).with_name("envkit")
    with envkit.up(tmp_path, backend=backend) as env:
        for _ in range(3):
            restoring = subprocess.Popen([str(exe), "reset", env.run_id, "db", "--restore"], stderr=subprocess.PIPE,
                                         text=True)
            swaps = [envkit_cli("reset", env.run_id, "db") for _ in range(4)]
            error = restoring.communicate(timeout=120)[1]
            assert restoring.returncode == 0, error
            assert [s.returncode for s in swaps] == [0] * 4, [s.stderr for s in swaps]
        assert len(env.info.replicas("db")) == 1
