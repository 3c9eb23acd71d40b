"""Seed steps: how they are read (every form, every mistake) and where the plan puts them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api
from envkit.backends.base import Capability, ExecResult
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.blueprint.model import CopySeed, ExecSeed, HttpSeed, RunSeed, SqlSeed
from envkit.errors import BlueprintError
from envkit.execute import Executor
from envkit.plan import Plan, RunIdentity, make_plan
from envkit.seed_plan import seed_plan
from envkit.steps import SeedStep

IDENTITY = RunIdentity("r1", "me@host:1", "2030-01-01T00:00:00Z", "0.1.0")
ALL = frozenset(Capability)
BP = """
    name: s
    services:
      db:
        image: postgres:16
        ports: [5432]
        seed:
          - sql: seed/schema.sql
          - sql: {inline: "INSERT INTO runs VALUES ('${run.id}')", database: shop, user: shop, timeout: 30s}
          - copy: {source: seed/files, target: /srv/files, owner: "999:999", mode: "0640"}
          - exec: {command: [psql, -c, "ANALYZE"], stdin: seed/schema.sql}
          - http: "PUT /reindex"
          - run: {build: ./tool, command: [migrate, up]}
      web:
        image: busybox
        depends_on: {db: {condition: started}}
      api:
        image: busybox
        depends_on: [db]
    """
FILES = {"seed/schema.sql": "CREATE TABLE runs (id text);\n", "seed/files/a.txt": "a",
         "tool/Dockerfile": "FROM debian:bookworm-slim\n"}
TOOL = "envkit/s-tool:feedface"


@pytest.fixture
def bp(load_text: Callable[..., Blueprint]) -> Blueprint:
    return load_text(BP, FILES)


def plan(bp: Blueprint, seed: bool = True, existing: frozenset[str] = frozenset({"postgres:16", "busybox"})) -> Plan:
    return make_plan(bp, IDENTITY, existing, {"db/seed/6": TOOL}, capabilities=ALL, seed=seed)


def lines(p: Plan, prefix: str) -> list[str]:
    return [line.strip() for line in p.text().splitlines() if line.strip().startswith(prefix)]


def test_every_kind_is_read_into_its_model_item(bp: Blueprint) -> None:
    sql, inline, copy, run_exec, http, run = bp.services["db"].seed
    assert isinstance(sql, SqlSeed) and sql.file is not None and sql.file.name == "schema.sql"
    assert isinstance(inline, SqlSeed) and inline.database == "shop" and inline.timeout == 30.0
    assert isinstance(copy, CopySeed) and copy.owner == "999:999" and copy.mode == 0o640 and copy.source.is_dir()
    assert isinstance(run_exec, ExecSeed) and run_exec.stdin is not None and run_exec.command[0] == "psql"
    assert isinstance(http, HttpSeed) and (http.method, http.path, http.port) == ("PUT", "/reindex", None)
    assert isinstance(run, RunSeed) and run.build is not None and run.command == ("migrate", "up")
    assert inline.at == ("services", "db", "seed", 1, "sql")


def test_seed_steps_sit_between_ready_and_usable_in_order(bp: Blueprint) -> None:
    p = plan(bp)
    assert [_normalised(line) for line in lines(p, "seed:") + lines(p, "usable:db")] == [
        "seed:db.1 seed envkit-r1-db-1 after ready:db-1",
        "seed:db.2 seed envkit-r1-db-1 after seed:db.1",
        "seed:db.3 seed envkit-r1-db-1 after seed:db.2",
        "seed:db.4 seed envkit-r1-db-1 after seed:db.3",
        "seed:db.5 seed envkit-r1-db-1 after seed:db.4",
        f"seed:db.6 seed envkit-r1-db-1 after seed:db.5, image:{TOOL}",
        "usable:db usable db after seed:db.6",
    ]
    text = p.text()
    # Each step's cause says which it is, with the run's own values resolved.
    assert "(2/6 sql INSERT INTO runs VALUES ('r1'))" in text
    assert "(1/6 sql seed/schema.sql)" in text and "(6/6 run tool: migrate up)" in text
    assert "(3/6 copy seed/files -> /srv/files)" in text
    assert "(every replica ready, 6 seed steps done)" in text
    # The seed tool's image is built like any service's.
    assert _normalised(lines(p, f"image:{TOOL}")[0]) == f"image:{TOOL} build {TOOL}"


def _normalised(text: str) -> str:
    return " ".join(text.split())


def test_a_dependant_waiting_for_ready_waits_for_the_seeds_one_started_does_not(bp: Blueprint) -> None:
    p = plan(bp)
    assert "usable:db" in p.step("release:api-1").after  # api: db ready → after the seeds
    assert p.step("start:web-1").after == ("create:web-1", "start:db-1")  # web: db started → not after them
    assert not any(a.startswith("seed:") or a == "usable:db" for a in p.step("start:web-1").after)


def test_no_seed_plans_no_seed_steps_and_no_seed_image(bp: Blueprint) -> None:
    p = plan(bp, seed=False)
    assert lines(p, "seed:") == []
    assert p.step("usable:db").after == ("ready:db-1",)
    assert not any(s.id == f"image:{TOOL}" for s in p.steps)


def test_the_payloads_carry_what_their_handlers_need(bp: Blueprint) -> None:
    p = plan(bp)
    http = p.step("seed:db.5").payload
    assert isinstance(http, SeedStep) and isinstance(http.seed, HttpSeed)
    assert http.seed.port == 5432  # the service's only port
    run = p.step("seed:db.6").payload
    assert isinstance(run, SeedStep)
    assert (run.image, run.name) == (TOOL, "envkit-r1-db-seed-6")
    assert [n.network for n in run.networks] == ["envkit-r1-default"]
    labels = dict(run.labels)
    assert labels["io.envkit.role"] == "seed" and labels["io.envkit.run"] == "r1"
    assert "io.envkit.service" not in labels  # not a replica of db
    assert run.detail == "6/6 run tool: migrate up"


def test_an_http_step_without_a_port_on_a_service_of_several_names_the_step(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          web:
            image: busybox
            ports: [80, 443]
            seed: [{http: /warm}]
        """)
    with pytest.raises(BlueprintError, match=r"blueprint.yaml:6:13 services.web.seed\[0\].http: an http seed step "
                                             r"needs 'port' \(service web has ports: 80, 443\)"):
        plan(bp)


def test_an_engine_without_file_copies_is_refused_at_the_seed(bp: Blueprint) -> None:
    with pytest.raises(BlueprintError) as err:
        make_plan(bp, IDENTITY, frozenset(), {"db/seed/6": TOOL}, capabilities=frozenset(), engine="swarm")
    text = str(err.value)
    assert "services.db.seed[0].sql: engine swarm cannot copy files into containers" in text
    assert "seed[3].exec" in text and "seed[4]" not in text and "seed[5]" not in text  # http and run copy nothing


def test_envkit_seed_plans_the_seeds_alone_dependencies_first(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          db: {image: pg, seed: [{exec: "true"}, {exec: "false"}]}
          api: {image: app, depends_on: [db], seed: [{exec: "true"}]}
          web: {image: app, depends_on: [api]}
        """)
    p = seed_plan(bp, IDENTITY, ("api", "db", "web"), frozenset({"pg", "app"}), {})
    assert [(s.id, s.after) for s in p.steps] == [
        ("seed:db.1", ()), ("seed:db.2", ("seed:db.1",)), ("seed:api.1", ("seed:db.2",))]


@pytest.mark.parametrize(("step", "message"), [
    ("{sql: missing.sql}", "seed[0].sql: SQL file 'missing.sql' does not exist"),
    ("{copy: {source: nothing-here, target: /x}}", "seed[0].copy.source: copy source 'nothing-here' does not exist"),
    ("{copy: {source: blueprint.yaml, target: relative}}", "seed[0].copy.target: 'relative' must be an absolute path"),
    ("{copy: {source: blueprint.yaml}}", "seed[0].copy: a copy step needs 'target'"),
    ("{copy: {source: blueprint.yaml, target: /x, owner: nobody}}", "expected a numeric owner"),
    ("{exec: {stdin: no.txt, command: cat}}", "seed[0].exec.stdin: stdin file 'no.txt' does not exist"),
    ("{http: {path: nope}}", "HTTP path must start with '/'"),
    ("{http: {path: /x, method: FETCH}}", "unknown HTTP method 'FETCH'"),
    ("{http: {path: /x, status: 99}}", "expected an HTTP status (100..599)"),
    ("{sql: {file: blueprint.yaml, inline: x}}", "exactly one of 'file' and 'inline'"),
    ("{sql: {inline: x, client: sqlite}}", "unknown SQL client 'sqlite'"),
    ("{sql: x, exec: y}", "a seed step needs exactly one of: sql, copy, exec, http, run (found sql, exec)"),
    ("{seeed: x}", "unknown key 'seeed'"),
    ("{run: {image: a, build: .}}", "use either 'image' or 'build', not both"),
    ("{exec: \"echo ${services.db.host}\"}", "'${services.db.host}' is not known to a seed step"),
    ("{sql: {inline: x, timeout: 0s}}", "a timeout must be longer than 0s"),
])
def test_a_wrong_step_is_reported_at_its_key(load_text: Callable[..., Blueprint], step: str, message: str) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text(f"""
            services:
              db:
                image: x
                seed: [{step}]
            """)
    assert message in str(err.value)
    assert "blueprint.yaml:5:" in str(err.value)


def test_a_job_can_only_have_run_steps(load_text: Callable[..., Blueprint]) -> None:
    with pytest.raises(BlueprintError, match=r"services.j.seed\[0\].exec: a job has exited when its seeds run"):
        load_text("""
            services:
              j: {image: x, kind: job, seed: [{exec: "true"}, {run: {command: ["true"]}}]}
            """)


def test_seed_steps_run_in_order_on_the_fake_engine_with_typed_events(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text("""
        services:
          db: {image: pg, seed: [{exec: [load, one]}, {exec: [load, two]}]}
        """)
    commands: list[tuple[str, ...]] = []

    class Recording(FakeBackend):
        def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
                 timeout: float | None = None) -> ExecResult:
            commands.append(command)
            return super().exec(container_id, command, user, timeout)

    backend = Recording(images=["pg"])
    p = make_plan(bp, IDENTITY, frozenset({"pg"}), {}, capabilities=backend.capabilities)
    events: list[tuple[str, str, str]] = []
    Executor(backend, lambda e: events.append((e.action, e.phase, e.detail)) if e.action == "seed" else None).run(p)
    assert [e for e in events if e[1] == "start"] == [("seed", "start", "1/2 exec load one"),
                                                      ("seed", "start", "2/2 exec load two")]
    assert commands == [("load", "one"), ("load", "two")]


def test_envkit_seed_finds_a_blueprint_brought_up_by_a_relative_path_from_another_folder(
        write_blueprint: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_blueprint("""
        name: rel
        services:
          db: {image: pg, seed: [{exec: [load, one]}]}
        """)
    backend = FakeBackend(images=["pg"])
    monkeypatch.chdir(folder)  # `cd bp && envkit up .`
    with api.up(".", name="rel-1", backend=backend, env={}) as env:
        assert env.info.blueprint_path == str(folder.resolve() / "blueprint.yaml")
        monkeypatch.chdir(folder.parent)  # `envkit seed rel-1` from anywhere else
        plan = api.seed("rel-1", backend=backend, env={})
        assert [s.id for s in plan.steps] == ["seed:db.1"]
