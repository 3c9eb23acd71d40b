"""Snapshot keys (stable across processes, folders and machines; any changed input changes them) and the
plan of a run that captures or starts from a snapshot, on the in-memory engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.base import Capability
from envkit.backends.fake import FakeBackend
from envkit.blueprint import load
from envkit.errors import BlueprintError, UsageError
from envkit.plan import RunIdentity, make_plan
from envkit.snapshot_plan import passed_over, wanted

BLUEPRINT = """\
name: keyed
services:
  db:
    image: postgres:16
    environment: {POSTGRES_PASSWORD: pw}
    ports: [5432]
    snapshot: true
    seed:
      - sql: {file: seed/one.sql}
  api:
    image: api:1
    depends_on: [db]
    snapshot: {reset: restore}
"""
IDS = {"db": "sha256:aaaa", "api": "sha256:bbbb"}


def write(folder: Path, blueprint: str = BLUEPRINT, sql: str = "CREATE TABLE t (x int);\n") -> Path:
    (folder / "seed").mkdir(parents=True, exist_ok=True)
    (folder / "seed" / "one.sql").write_text(sql, encoding="utf-8")
    (folder / "blueprint.yaml").write_text(blueprint, encoding="utf-8")
    return folder


def keys(folder: Path) -> dict[str, str]:
    return S.service_keys(load(folder, {}), IDS, ["db", "api"])


def test_the_same_inputs_give_the_same_key_in_any_folder_and_process(tmp_path: Path) -> None:
    a, b = keys(write(tmp_path / "a")), keys(write(tmp_path / "elsewhere" / "b"))
    assert a == b
    code = ("import json, sys; from envkit import snapshots as S; from envkit.blueprint import load; "
            f"print(json.dumps(S.service_keys(load(sys.argv[1], {{}}), {IDS!r}, ['db', 'api'])))")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], capture_output=True, text=True,
                           check=True, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONHASHSEED": "7"})
    assert json.loads(other.stdout) == a
    assert all(len(k) == 64 for k in a.values())


def test_the_key_holds_no_path_and_no_time(tmp_path: Path) -> None:
    bp = load(write(tmp_path / "x"), {})
    document = json.dumps(S._config(bp, bp.services["db"]))
    assert str(tmp_path) not in document and "seed/one.sql" in document


@pytest.mark.parametrize("change", ["seed file", "environment", "image", "dependency", "port"])
def test_any_changed_input_gives_a_new_key(tmp_path: Path, change: str) -> None:
    base = keys(write(tmp_path / "base"))
    folder = tmp_path / "changed"
    if change == "seed file":
        changed = keys(write(folder, sql="CREATE TABLE t (x bigint);\n"))
    elif change == "environment":
        changed = keys(write(folder, BLUEPRINT.replace("pw}", "other}")))
    elif change == "port":
        changed = keys(write(folder, BLUEPRINT.replace("[5432]", "[5433]")))
    else:
        ids = {**IDS, "db": "sha256:cccc"} if change == "image" else IDS
        changed = S.service_keys(load(write(folder), {}), ids, ["db", "api"])
        if change == "dependency":
            assert changed == base  # same inputs: same keys …
            changed = keys(write(folder, sql="-- another seed\n"))
            assert changed["api"] != base["api"]  # … and a dependant's key follows its dependency's
    assert changed["db"] != base["db"]


def test_what_does_not_change_the_state_keeps_the_key(tmp_path: Path) -> None:
    base = keys(write(tmp_path / "base"))
    moved = keys(write(tmp_path / "m", BLUEPRINT.replace("ports: [5432]", "ports: ['127.0.0.1:15432:5432']")))
    assert moved["db"] == base["db"]  # where a port is published on the host is no part of the state


def test_snapshot_is_refused_on_jobs_and_replicas(tmp_path: Path) -> None:
    text = "services:\n  j: {image: x, kind: job, snapshot: true}\n  r: {image: x, replicas: 2, snapshot: true}\n" \
           "  b: {image: x, snapshot: {reset: fast}}\n"
    with pytest.raises(BlueprintError) as err:
        load(write(tmp_path / "bad", text), {})
    messages = [p.message for p in err.value.problems]
    assert any(m.startswith("a job has no state to snapshot: it runs to completion") for m in messages)
    assert any(m.startswith("cannot snapshot a service with 2 replicas: its sql, exec, http and run seeds reach "
                            "replica 1 only") for m in messages)
    assert any("expected auto, template or restore, got 'fast'" in m or "fast" in m for m in messages)


def _plan(folder: Path, uses: dict[str, S.Use]) -> str:
    bp = load(folder, {})
    ident = RunIdentity("keyed-1", "me@here:1", "2026-01-01T00:00:00Z", "0")
    return make_plan(bp, ident, frozenset({"postgres:16", "api:1", "seedimg"}), {}, capabilities=frozenset(Capability),
                     engine="fake", snapshots=uses).text()


def test_a_miss_seeds_then_captures_before_usable(tmp_path: Path) -> None:
    text = _plan(write(tmp_path / "p"), {"db": S.Use("ab" * 32, claim="envkit-snapshot-abab-claim")})
    lines = [line.split()[0] for line in text.splitlines()[1:] if line.startswith("  ") and not line.startswith("   ")]
    assert lines.index("snapshot:db") > max(i for i, x in enumerate(lines) if x.startswith("seed:db"))
    assert "usable:db" in lines and lines.index("usable:db") > lines.index("snapshot:db")
    assert "release:api-1" in text  # api waits for db behind the gate …
    both = _plan(tmp_path / "p", {"db": S.Use("ab" * 32), "api": S.Use("cd" * 32)})
    assert "release:api-1" not in both  # … unless it is snapshotted too: its image would keep the gate


def test_a_hit_restores_volumes_and_skips_seeds(tmp_path: Path) -> None:
    snap = S.Snapshot("cd" * 32, "db", "keyed", "envkit-snapshot/db:cdcd", (("/var/lib/postgresql/data", "vol-1"),),
                      "restore", "2026-01-01T00:00:00Z", (L.RUN, L.OUTPUT_PREFIX + "OLD"))
    bp = load(write(tmp_path / "h"), {})
    ident = RunIdentity("keyed-1", "me@here:1", "2026-01-01T00:00:00Z", "0")
    plan = make_plan(bp, ident, frozenset({"api:1"}), {}, capabilities=frozenset(Capability), engine="fake",
                     snapshots={"db": S.Use(snap.key, snapshot=snap)})
    text = plan.text()
    assert "seed:db" not in text and "snapshot:db" not in text and "image:postgres:16" not in text
    create = plan.step("create:db-1").payload
    assert "restore:db-1" in plan.step("create:db-1").after
    labels = dict(create.spec.labels)  # type: ignore[attr-defined]
    assert create.spec.image == snap.image  # type: ignore[attr-defined]
    assert labels[L.RUN] == "keyed-1" and labels[L.OUTPUT_PREFIX + "OLD"] == "" and labels[L.SNAPSHOT] == snap.key
    assert [m.target for m in create.spec.mounts] == ["/var/lib/postgresql/data"]  # type: ignore[attr-defined]


def test_wanted_follows_the_blueprint_and_the_flag(tmp_path: Path) -> None:
    bp = load(write(tmp_path / "w"), {})
    assert wanted(bp, ("api", "db"), None) == ["api", "db"]
    assert wanted(bp, ("api", "db"), False) == []
    assert wanted(bp, ("api", "db"), ["db"]) == ["db"]


INITDB = """\
name: initdb
services:
  pg:
    image: postgres:16
    volumes: ["./initdb:/docker-entrypoint-initdb.d:ro"]
  maria:
    image: mariadb:11
    volumes: ["./schema.sql:/docker-entrypoint-initdb.d/01-schema.sql"]
  twice:
    image: postgres:16
    replicas: 2
    volumes: ["./initdb:/docker-entrypoint-initdb.d"]
  beside:
    image: postgres:16
    volumes: ["./initdb:/docker-entrypoint-initdb.d.bak"]
  cache:
    image: redis:7
"""


def test_the_flag_also_covers_services_seeded_through_docker_entrypoint_initdb_d(tmp_path: Path) -> None:
    (tmp_path / "initdb").mkdir()
    (tmp_path / "initdb" / "01.sql").write_text("CREATE TABLE t (x int);\n", encoding="utf-8")
    (tmp_path / "schema.sql").write_text("CREATE TABLE u (x int);\n", encoding="utf-8")
    (tmp_path / "blueprint.yaml").write_text(INITDB, encoding="utf-8")
    bp = load(tmp_path, {})
    every = tuple(bp.services)
    assert wanted(bp, every, True) == ["maria", "pg"]  # the folder, or one file in it; one replica; not a lookalike
    assert [(n, why[:41]) for n, why in passed_over(bp, every, True)] == [
        ("twice", "cannot snapshot a service with 2 replicas")]  # said in a note, not skipped in silence
    assert passed_over(bp, every, None) == []
    assert wanted(bp, every, None) == []  # without the flag, only what the blueprint says
    ids = {name: "sha256:cccc" for name in bp.services}
    before = S.service_keys(bp, ids, ["pg"])["pg"]
    (tmp_path / "initdb" / "01.sql").write_text("CREATE TABLE t (x bigint);\n", encoding="utf-8")
    assert S.service_keys(load(tmp_path, {}), ids, ["pg"])["pg"] != before  # the scripts are in the key


def test_claims_are_exclusive_and_stale_ones_are_taken_over() -> None:
    fake = FakeBackend()
    run = {L.MANAGED: "true", L.RUN: "r1", L.OWNER: "me@nowhere:1", L.CREATED_AT: "2099-01-01T00:00:00Z"}
    key = "ef" * 32
    first = S.acquire(fake, key, run, deadline=0)
    assert isinstance(first, S.Claim)
    with pytest.raises(S.Busy):
        S.acquire(fake, key, {**run, L.RUN: "r2"}, deadline=0)  # held by a live claim: waits, then gives up
    old = {**run, L.CREATED_AT: "2000-01-01T00:00:00Z"}
    fake.volumes.clear()
    assert isinstance(S.acquire(fake, key, old, deadline=0), S.Claim)
    assert isinstance(S.acquire(fake, key, {**run, L.RUN: "r3"}, deadline=0), S.Claim)  # the old one was stale


def test_a_snapshot_refuses_seeds_that_write_the_run_id(tmp_path: Path) -> None:
    """Every run started from a snapshot holds what its seeds wrote: a ``${run.id}`` (or psql's
    ``:'run_id'``) there would be the capturing run's id in all of them, silently."""
    inline = BLUEPRINT.replace("      - sql: {file: seed/one.sql}",
                               "      - sql: {file: seed/one.sql}\n      - sql: {inline: \"SELECT '${run.id}'\"}")
    with pytest.raises(BlueprintError) as caught:
        load(write(tmp_path / "inline", inline), {})
    (problem,) = caught.value.problems
    assert (problem.line, str(problem.path)) == (10, "services.db.seed[1].sql")
    assert problem.message.startswith("this step writes the run id (${run.id}, or psql's :'run_id'), but the "
                                      "service has a snapshot")
    with pytest.raises(BlueprintError) as caught:
        load(write(tmp_path / "file", sql="INSERT INTO meta VALUES (:'run_id');\n"), {})
    assert [str(p.path) for p in caught.value.problems] == ["services.db.seed[0].sql"]
    # without a snapshot the same steps are fine; `--snapshot` leaves such a service out, `--snapshot db` refuses
    bp = load(write(tmp_path / "plain", BLUEPRINT.replace("    snapshot: true\n", ""),
                    sql="SELECT :'run_id', 'a::run_id';\n"), {})
    assert wanted(bp, ("api", "db"), True) == ["api"]
    with pytest.raises(UsageError, match=r"--snapshot db: seed step 1: this step writes the run id"):
        wanted(bp, ("api", "db"), ["db"])
    assert wanted(load(write(tmp_path / "cast", sql="SELECT 1::int, ':run_idx';\n"), {}), ("api", "db"), None) == [
        "api", "db"]


def test_a_key_at_its_default_is_no_part_of_the_key(tmp_path: Path) -> None:
    # So a service key a later envkit adds (at its default) leaves every existing snapshot's key as it was.
    bp = load(write(tmp_path / "x"), {})
    assert set(S._config(bp, bp.services["db"])) == {"name", "environment", "networks", "seed", "snapshot", "volumes",
                                                        "ports"}
    base = keys(tmp_path / "x")
    spelled = keys(write(tmp_path / "y", BLUEPRINT.replace("    snapshot: true\n",
                                                        "    snapshot: true\n    read_only: false\n    cap_drop: []\n")))
    assert spelled == base
    hardened = keys(write(tmp_path / "z", BLUEPRINT.replace("    snapshot: true\n", "    snapshot: true\n    read_only: true\n")))
    assert hardened["db"] != base["db"]


def test_two_kinds_of_step_with_the_same_fields_give_two_keys(tmp_path: Path) -> None:
    # Defaults are left out of the key, so the kind of each step must stay in it.
    exec_step = BLUEPRINT.replace("      - sql: {file: seed/one.sql}\n", "      - exec: [sh, -c, 'echo hi']\n")
    run_step = BLUEPRINT.replace("      - sql: {file: seed/one.sql}\n", "      - run: {command: [sh, -c, 'echo hi']}\n")
    assert keys(write(tmp_path / "e", exec_step))["db"] != keys(write(tmp_path / "r", run_step))["db"]
