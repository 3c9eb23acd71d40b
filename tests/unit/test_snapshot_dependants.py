"""Seeds of dependants that may write into a service with a snapshot (docs/snapshots.md#seeds-of-dependants):
which steps those are, the plan's label naming them, the wait for the capture, the refusal to snapshot such
a dependant, and the reset that runs them again, once, on the in-memory engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from contract.backend_contract import tar_of

from envkit import api
from envkit import labels as L
from envkit import reset as reset_module
from envkit import snapshots as S
from envkit.backends import _tar
from envkit.backends.base import Capability, ContainerSpec, ExecResult, VolumeSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint, load
from envkit.errors import BlueprintError, RunNotFound, SeedFailed, UsageError
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.seed_plan import outward, writers
from envkit.snapshot_plan import image_ids, passed_over, wanted

BLUEPRINT = """
    name: deps
    services:
      db:
        image: base:1
        snapshot: {reset: restore}
        seed: [{exec: [load, db]}]
      cache:
        image: base:1
        seed: [{exec: [load, cache]}]
      api:
        image: base:1
        depends_on: [db, cache]
        ports: [8080]
        seed:
          - copy: {source: files/a.txt, target: /tmp/a.txt}
          - exec: [load, api]
          - http: {path: /customers, json: {name: x}}
      fixtures:
        image: base:1
        kind: job
        depends_on: [db]
        seed: [{run: {command: [load, fixtures]}}]
      loader:
        image: base:1
        kind: job
        depends_on: [api]
        seed: [{run: {command: [load, loader]}}]
      side:
        image: base:1
        seed: [{exec: [load, side]}]
"""
FILES = {"files/a.txt": "a\n"}
IDENTITY = RunIdentity("deps-1", "me@here:1", "2026-01-01T00:00:00Z", "0")


def plan(bp: Blueprint, snapshots: dict[str, S.Use], only: tuple[str, ...] = ()) -> Plan:
    return make_plan(bp, IDENTITY, frozenset({"base:1"}), {}, only, capabilities=frozenset(Capability),
                     engine="fake", snapshots=snapshots)


def test_the_steps_that_may_write_into_a_dependency_and_the_services_they_may_reach(
        load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(BLUEPRINT, FILES)
    assert outward(bp.services["api"]) == (2, 3)  # exec and http; the copy lands in api's own container
    assert outward(bp.services["fixtures"]) == (1,)
    assert outward(bp.services["db"]) == outward(bp.services["side"]) == ()  # no dependency to write into
    every = tuple(bp.services)
    assert writers(bp, every, "db") == ("api", "fixtures", "loader")  # loader through api, dependencies first
    assert writers(bp, every, "cache") == ("api", "loader")
    assert writers(bp, every, "side") == ()
    assert writers(bp, ("db", "fixtures"), "db") == ("fixtures",)  # only what the run has


def test_a_snapshot_service_is_labelled_with_the_dependants_a_reset_seeds_again(
        load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(BLUEPRINT, FILES)
    miss = plan(bp, {"db": S.Use("ab" * 32, claim="c")})
    labels = dict(miss.step("create:db-1").payload.spec.labels)  # type: ignore[attr-defined]
    assert labels[L.RESEED] == "api,fixtures,loader"
    snap = S.Snapshot("cd" * 32, "db", "deps", "envkit-snapshot/db:cdcd", (), "restore", "2026-01-01T00:00:00Z")
    hit = plan(bp, {"db": S.Use(snap.key, snapshot=snap)})
    assert dict(hit.step("create:db-1").payload.spec.labels)[L.RESEED] == "api,fixtures,loader"  # type: ignore[attr-defined]
    assert "seed:api.2" in hit.text() and "seed:fixtures.1" in hit.text()  # their seeds run on a hit: db lacks them
    alone = plan(bp, {"db": S.Use(snap.key, snapshot=snap)}, only=("db",))
    assert L.RESEED not in dict(alone.step("create:db-1").payload.spec.labels)  # type: ignore[attr-defined]


def test_a_dependant_started_early_waits_for_the_capture_before_its_steps_that_may_write_into_it(
        load_text: Callable[..., Blueprint]) -> None:
    """A ``started`` edge lets api run while db still seeds: its writes would land in db's snapshot, whose
    key does not hold them, and a later run would get them twice (from the snapshot and from api's seeds)."""
    bp = load_text("""
        services:
          db: {image: base:1, snapshot: true, seed: [{exec: [load, db]}]}
          api:
            image: base:1
            depends_on: {db: {condition: started}}
            seed: [{exec: [load, api]}]
          web:
            image: base:1
            depends_on: {api: {condition: started}}
            seed: [{exec: [load, web]}]
          files:
            image: base:1
            depends_on: {db: {condition: started}}
            seed: [{sql: "SELECT 1"}]
        """)
    miss = plan(bp, {"db": S.Use("ab" * 32, claim="c")})
    assert "usable:db" in miss.step("seed:api.1").after
    assert "usable:db" in miss.step("seed:web.1").after  # through api, which does not wait for db either
    assert "usable:db" not in miss.step("seed:files.1").after  # its own container only
    snap = S.Snapshot("cd" * 32, "db", "x", "envkit-snapshot/db:cdcd", (), "restore", "2026-01-01T00:00:00Z")
    hit = plan(bp, {"db": S.Use(snap.key, snapshot=snap)})
    assert "usable:db" not in hit.step("seed:api.1").after  # nothing is captured: no reason to wait
    ready = plan(load_text(BLUEPRINT, FILES), {"db": S.Use("ab" * 32, claim="c")})
    assert "usable:db" not in ready.step("seed:api.2").after  # api starts after usable:db already


def test_a_service_whose_seeds_may_write_into_its_dependencies_cannot_have_a_snapshot(
        write_blueprint: Callable[..., Path]) -> None:
    """Its snapshot would hold its own state only: a later run starting from it skips the steps, and the
    services they wrote into would miss those writes, silently."""
    snapshotted = BLUEPRINT.replace("        ports: [8080]\n", "        ports: [8080]\n        snapshot: true\n")
    with pytest.raises(BlueprintError) as caught:
        load(write_blueprint(snapshotted, FILES), {})
    (problem,) = caught.value.problems
    assert str(problem.path) == "services.api.seed[1].exec"
    assert problem.message.startswith("this step may write into the services api depends on (cache, db), which "
                                      "its snapshot cannot hold")
    bp = load(write_blueprint(BLUEPRINT, FILES, folder="flag"), {})
    every = tuple(bp.services)
    assert wanted(bp, every, True) == ["cache", "db", "side"]  # the flag leaves api out …
    assert ("api", "seed step 2 may write into the services it depends on (cache, db), which a snapshot of api "
                   "cannot hold: its seeds run in every run, and a reset of a service they write into runs them "
                   "again ('writes: own' on a step that writes into the service alone)") in passed_over(bp, every, True)
    with pytest.raises(UsageError, match=r"--snapshot api: seed step 2: this step may write into the services"):
        wanted(bp, every, ["api"])
    own = BLUEPRINT.replace("          - exec: [load, api]\n          - http: {path: /customers, json: {name: x}}\n",
                            "          - sql: \"SELECT 1\"\n").replace("        ports: [8080]\n",
                                                                      "        snapshot: true\n")
    assert load(write_blueprint(own, FILES, folder="own"), {}).services["api"].snapshot is not None  # sql, copy: fine


class Recording(FakeBackend):
    """Records each seed's command: an exec in a container, or a seed container's."""

    def __init__(self, run: str = "deps-1") -> None:
        super().__init__(images={"base:1"})
        self.seeded: list[str] = []
        for job in ("fixtures", "loader"):  # the jobs and their seed containers exit 0 at once
            self.exit_codes[job] = self.exit_codes[f"envkit-{run}-{job}-seed-1"] = 0

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        if command[:1] == ("load",):
            self.seeded.append(command[1])
        return super().exec(container_id, command, user, timeout)

    def create_container(self, spec: ContainerSpec) -> str:
        if "-seed-" in spec.name and spec.command and spec.command[:1] == ("load",):
            self.seeded.append(spec.command[1])
        return super().create_container(spec)


def snapshot_of(fake: FakeBackend, bp: Blueprint) -> None:
    """A complete snapshot of db, made by hand (its image holds /etc/seeded)."""
    key = S.service_keys(bp, image_ids(fake, bp, ("db",)), ["db"])["db"]
    tag = S.image_tag("db", key)
    fake.images.add(tag)
    fake.image_files[tag] = {}
    _tar.unpack(fake.image_files[tag], "/etc", tar_of({"seeded": b"image"}))
    snap = S.Snapshot(key, "db", "deps", tag, (), "restore", "2026-01-01T00:00:00Z")
    fake.create_volume(VolumeSpec(S.manifest_name(key), tuple(sorted(snap.labels().items()))))


def test_a_reset_runs_the_dependants_steps_that_may_write_into_it_again_once_each(
        write_blueprint: Callable[..., Path]) -> None:
    folder = write_blueprint(BLUEPRINT.replace("          - http: {path: /customers, json: {name: x}}\n", ""), FILES)
    fake = Recording()
    bp = load(folder, {})
    snapshot_of(fake, bp)
    with api.up(folder, name="deps-1", env={}, backend=fake) as env:
        assert sorted(fake.seeded) == ["api", "cache", "fixtures", "loader", "side"]  # db from its snapshot
        fake.seeded.clear()
        fake.calls.clear()
        env.reset("db")
        assert fake.seeded == ["api", "fixtures", "loader"]  # dependencies first; not db's, cache's or side's
        api_1 = env.info.replicas("api")[0].id
        assert ("copy_into", api_1) not in fake.calls  # api's copy step acted on api's container: not again
        fake.seeded.clear()
        env.reset("db")  # again (the way that does not describe the run): lost again, run again
        assert fake.seeded == ["api", "fixtures", "loader"]
        fake.seeded.clear()
        reset_module.reset(fake, "deps-1", ["db"], env={})  # another process: the blueprint from the run's path
        assert fake.seeded == ["api", "fixtures", "loader"]
        fake.seeded.clear()
        fake.calls.clear()
        with pytest.raises(UsageError, match="service cache of run deps-1 was not started with a snapshot"):
            env.reset("db", "cache")  # refused before db is reset (not db reset without api's seeds)
        assert not fake.seeded and not [c for c in fake.calls if c[0] in ("remove_container", "create_container")]


def test_a_reset_of_a_service_no_dependant_writes_into_runs_no_seed(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        name: deps
        services:
          db: {image: base:1, snapshot: {reset: restore}, seed: [{exec: [load, db]}]}
          api: {image: base:1, depends_on: [db], seed: [{sql: "SELECT 1"}]}
        """)
    fake = Recording("deps-2")
    snapshot_of(fake, bp)
    with api.up(bp, name="deps-2", backend=fake) as env:
        assert L.RESEED not in env.info.replicas("db")[0].labels
        fake.calls.clear()
        env.reset("db")
        assert not [c for c in fake.calls if c[0] == "exec"]  # api's sql step acted on api's container only


def test_a_reset_of_several_services_one_of_whose_snapshots_is_gone_resets_none_of_them(
        load_text: Callable[..., Blueprint]) -> None:
    """A snapshot removed since the run began (``envkit snapshots rm/prune``) is found out before any service
    is reset: else db would be reset, search refused, and api's steps that wrote into db not run again."""
    bp = load_text("""
        name: deps
        services:
          db: {image: base:1, snapshot: {reset: restore}, seed: [{exec: [load, db]}]}
          search: {image: base:1, snapshot: {reset: restore}, seed: [{exec: [load, search]}]}
          api: {image: base:1, depends_on: [db, search], seed: [{exec: [load, api]}]}
        """)
    fake = Recording("deps-3")
    keys = S.service_keys(bp, image_ids(fake, bp, ("db", "search")), ["db", "search"])
    for name, key in keys.items():
        tag = S.image_tag(name, key)
        fake.images.add(tag)
        fake.image_files[tag] = {}
        snap = S.Snapshot(key, name, "deps", tag, (), "restore", "2026-01-01T00:00:00Z")
        fake.create_volume(VolumeSpec(S.manifest_name(key), tuple(sorted(snap.labels().items()))))
    with api.up(bp, name="deps-3", backend=fake) as env:
        fake.images.discard(S.image_tag("search", keys["search"]))  # `envkit snapshots rm` of search's
        fake.seeded.clear()
        fake.calls.clear()
        with pytest.raises(RunNotFound, match=r"snapshot \w+ of service search is gone"):
            env.reset("db", "search")
        assert not [c for c in fake.calls if c[0] in ("remove_container", "create_container")]  # db untouched
        assert not fake.seeded


def test_a_dependants_step_that_fails_when_run_again_says_the_reset_itself_is_done(
        write_blueprint: Callable[..., Path]) -> None:
    folder = write_blueprint(BLUEPRINT.replace("          - http: {path: /customers, json: {name: x}}\n", ""), FILES)
    fake = Recording()
    snapshot_of(fake, load(folder, {}))
    with api.up(folder, name="deps-1", env={}, backend=fake) as env:
        fake.exit_codes["envkit-deps-1-fixtures-seed-1"] = 3  # the fixtures loader fails the second time
        with pytest.raises(SeedFailed) as caught:
            env.reset("db")
        assert str(caught.value).startswith("service fixtures: seed step 1/1 (run")
        assert ("(db reset; then the seed steps of api, fixtures, loader that may write into it ran again, and "
                "this one failed: what they wrote is missing until they run again") in str(caught.value)


def test_a_step_marked_writes_own_writes_into_its_service_alone(
        load_text: Callable[..., Blueprint], write_blueprint: Callable[..., Path]) -> None:
    """A data store that depends on another service for its start order only (a search index waiting for the
    database it is later fed from, a bucket store waiting for its key service), whose exec steps create its own
    indexes or buckets: ``writes: own`` says so, and it may have a snapshot, as with sql and copy steps."""
    text = """
        name: deps
        services:
          db: {image: base:1, snapshot: {reset: restore}, seed: [{exec: [load, db]}]}
          search:
            image: base:1
            depends_on: {db: {condition: started}}
            ports: [9200]
            snapshot: true
            seed:
              - exec: {command: [load, search], writes: own}
              - http: {method: PUT, path: /products, writes: own}
              - run: {command: [load, more], writes: own}
        """
    bp = load_text(text)
    assert outward(bp.services["search"]) == ()
    assert writers(bp, tuple(bp.services), "db") == ()
    every = tuple(bp.services)
    assert wanted(bp, every, True) == ["db", "search"] and passed_over(bp, every, True) == []
    miss = plan(bp, {"db": S.Use("ab" * 32, claim="c"), "search": S.Use("cd" * 32, claim="d")})
    assert L.RESEED not in dict(miss.step("create:db-1").payload.spec.labels)  # type: ignore[attr-defined]
    assert "usable:db" not in miss.step("seed:search.1").after  # nothing of it lands in db's snapshot
    marked = bp.services["search"].seed[0]
    plain = load(write_blueprint(text.replace(", writes: own}", "}").replace("            snapshot: true\n", ""),
                                 folder="plain"), {})
    unmarked = plain.services["search"].seed[0]
    assert S._plain(unmarked, bp.directory) == {"@type": "ExecSeed", "command": ["load", "search"]}  # keys kept
    assert S._plain(marked, bp.directory)["writes"] == "own"
    with pytest.raises(BlueprintError) as caught:
        load(write_blueprint(text.replace("writes: own}", "writes: mine}", 1), folder="bad"), {})
    problem = {str(p.path): p.message for p in caught.value.problems}["services.search.seed[0].exec.writes"]
    assert problem.startswith("expected dependencies or own, got 'mine'")


def test_envkit_reset_and_seed_read_the_blueprint_with_the_env_files_up_was_given(
        write_blueprint: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reset runs dependants' steps again from the blueprint, read again in another process: a variable
    `up` read from --env-file must come from the same file there, or the reset fails once db is reset."""
    from click.testing import CliRunner

    from envkit.cli.commands import Session, cli

    monkeypatch.delenv("WHO", raising=False)
    folder = write_blueprint(BLUEPRINT.replace("          - http: {path: /customers, json: {name: x}}\n", "")
                             .replace("[load, api]", "[load, '${WHO:?set in .env.test}']"), FILES)
    (tmp_path / ".env.test").write_text("WHO=api-from-file\n")
    fake = Recording()
    snapshot_of(fake, load(folder, {"WHO": "x"}))
    with api.up(folder, name="deps-1", env_files=[tmp_path / ".env.test"], backend=fake):
        fake.seeded.clear()
        done = CliRunner().invoke(cli, ["reset", "deps-1", "db", "--env-file", str(tmp_path / ".env.test")],
                                  obj=Session(backend=fake))
        assert done.exit_code == 0, done.output
        assert fake.seeded == ["api-from-file", "fixtures", "loader"]
        fake.seeded.clear()
        done = CliRunner().invoke(cli, ["seed", "deps-1", "api", "--env-file", str(tmp_path / ".env.test")],
                                  obj=Session(backend=fake))
        assert done.exit_code == 0, done.output
        assert fake.seeded == ["api-from-file"]
