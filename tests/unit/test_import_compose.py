"""``envkit import``: Compose files → blueprints that validate, with notes; round trips with ``envkit export``."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from envkit.blueprint import Blueprint, load
from envkit.blueprint.model import Service
from envkit.blueprint.schema import schema
from envkit.blueprint.source import Marks, read_source
from envkit.cli import main
from envkit.errors import BlueprintError, UsageError
from envkit.export import image_tags, to_compose
from envkit.import_compose import ComposeImport, from_compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "tests" / "compose"
#: every blueprint that loads and that export can write (bundled and the suite's good ones)
BLUEPRINTS = sorted({*ROOT.glob("blueprints/*/blueprint.yaml"), *ROOT.glob("tests/blueprints/good/*/blueprint.yaml")})


def copy(name: str, tmp_path: Path) -> Path:
    """A copy of one of tests/compose/, to import and validate beside it."""
    return Path(shutil.copytree(COMPOSE / name, tmp_path / name))


def compose_in(folder: Path) -> Path:
    return next(p for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml"))


def imported(file: Path, **options: Any) -> ComposeImport:
    source = read_source(file)
    return from_compose(source.data, source.marks, source.directory, read=lambda p: p.read_text(encoding="utf-8"),
                        **options)


def load_text(text: str, folder: Path) -> Blueprint:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "imported.yaml").write_text(text, encoding="utf-8")
    return load(folder / "imported.yaml", {})


def model(bp: Blueprint) -> tuple[Any, ...]:
    """What must survive a round trip: everything but where the file was, and seed steps (Compose has
    none: export says so in a note, checked below). One spelling is made one: waiting for a job to be
    ``ready`` is waiting for it to have ``completed`` (the plan makes both the same)."""
    def same(svc: Service) -> Service:
        deps = tuple(dataclasses.replace(d, condition="completed")
                     if d.condition == "ready" and bp.services[d.service].kind == "job" else d for d in svc.depends_on)
        return dataclasses.replace(svc, depends_on=deps, seed=(), allow=())  # allow: the round trip moves the file

    return bp.name, {n: same(s) for n, s in bp.services.items()}, bp.networks, bp.volumes, bp.outputs


def round_trip(bp: Blueprint, tmp_path: Path) -> Blueprint:
    """Blueprint → compose file (as `envkit export -o` writes it) → `envkit import` → blueprint, loaded."""
    compose_dir = tmp_path / "compose"
    compose_dir.mkdir(parents=True, exist_ok=True)
    (compose_dir / "compose.yaml").write_text(to_compose(bp, image_tags(bp), base=compose_dir).text(), encoding="utf-8")
    result = imported(compose_dir / "compose.yaml", base=tmp_path / "back", keep_host_ports=True)
    return load_text(result.text(), tmp_path / "back")


# -- round trips ---------------------------------------------------------------------------------------------
# The secrets blueprint is left out: its top-level `secrets:` list does not survive a Compose file yet.
@pytest.mark.parametrize("path", [p for p in BLUEPRINTS if p.parent.name != "secrets"], ids=lambda p: p.parent.name)
def test_export_then_import_gives_the_same_model(path: Path, tmp_path: Path) -> None:
    bp = load(path, {})
    assert model(round_trip(bp, tmp_path)) == model(bp)
    notes = to_compose(bp, {n: "img:1" for n, s in bp.services.items() if s.build}).notes
    for name, svc in bp.services.items():
        assert bool(svc.seed) == any(n.startswith(f"services.{name}.seed:") for n in notes)


def test_what_compose_cannot_say_comes_back_through_x_envkit(tmp_path: Path) -> None:
    folder = tmp_path / "bp"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (folder / "blueprint.yaml").write_text(textwrap.dedent("""
        name: odd
        services:
          logs:
            build: {context: ./img, args: {A: "1"}, target: base}
            prestart: false
            ready: {log: "listening on .*$$", timeout: 7s}
          own:
            image: app:1
            ready: {healthcheck: true, timeout: 12s}
          plain:
            image: app:1
            depends_on: [logs, own]
            ready: {http: {port: 80, path: "/a$$b", status: 204, body: "o.k"}, timeout: 3s}
          once:
            image: app:1
            kind: job
        outputs:
          PRICE: "5$$ at ${services.plain.host}"
        """), encoding="utf-8")
    bp = load(folder, {})
    back = round_trip(bp, tmp_path)
    assert model(back) == model(bp)
    assert back.services["logs"].ready is not None and back.services["logs"].ready.pattern == "listening on .*$"


@pytest.mark.parametrize("name", ["django", "node-mongo", "kafka"])
def test_round_trips_of_the_imported_real_world_files(name: str, tmp_path: Path) -> None:
    folder = copy(name, tmp_path)
    text = imported(compose_in(folder)).text()
    jsonschema.validate(yaml.safe_load(text), schema())  # what editors would check, too
    first = load_text(text, folder)
    assert model(round_trip(first, tmp_path / "rt")) == model(first)


# -- real-world-shaped compose files ---------------------------------------------------------------------------
def test_django_postgres_redis_celery(tmp_path: Path) -> None:
    result = imported(COMPOSE / "django" / "docker-compose.yml")
    doc = result.document
    assert list(doc["services"]) == ["db", "redis", "migrate", "web", "worker", "beat"]  # mailhog: profile debug
    db, redis, migrate, web, worker = (doc["services"][s] for s in ("db", "redis", "migrate", "web", "worker"))
    assert db["ready"] == {"exec": ["/bin/sh", "-c", "pg_isready -U django -d django"], "timeout": "50s"}
    assert db["ports"] == [5432] and db["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert redis["ready"] == {"exec": ["redis-cli", "ping"], "timeout": "30s"}  # 2s x 15
    assert migrate["kind"] == "job"  # web waits for it to complete
    assert migrate["build"] == {"context": "./app", "args": {"PYTHON_VERSION": "3.11"}}
    assert web["depends_on"] == {"migrate": "completed", "redis": "ready"}
    assert worker["depends_on"] == {"db": "ready", "redis": "started"}
    assert web["ready"]["exec"][:2] == ["/bin/sh", "-c"] and web["ready"]["timeout"] == "70s"  # 10s + 3s x 20
    env = web["environment"]
    assert env["DATABASE_URL"] == "postgres://django:${POSTGRES_PASSWORD:-secret}@db:5432/django"  # left for envkit
    assert env["SECRET_KEY"] == "not-a-secret # really" and env["DEBUG"] == "false" and env["ALLOWED_HOSTS"] == "*"
    assert worker["replicas"] == 2 and worker["memory"] == "512M" and worker["cpus"] == 0.5
    assert doc["services"]["beat"]["stop_grace_period"] == "90s"
    assert doc["volumes"] == {"pgdata": None, "static": None}
    assert doc["outputs"] == {"DB_5432": "${services.db.host}:${services.db.ports.5432}",
                              "WEB_8000": "${services.web.host}:${services.web.ports.8000}"}
    notes = "\n".join(result.notes)
    for expected in ("services.mailhog.profiles: left out", "services.db.restart", "services.db.container_name",
                     "services.db.ports[0]: '5432:5432'", "services.web.image: not used"):
        assert expected in notes, expected
    assert "docker-compose.yml:27:5 services.db.restart" in notes  # file, line and column of the key
    bp = load_text(result.text(), copy("django", tmp_path))  # beside the compose file: ./app resolves
    assert bp.services["web"].ports[0].host is None and bp.services["web"].ports[0].host_ip == "127.0.0.1"


def test_profiles_and_pinned_ports_on_request() -> None:
    result = imported(COMPOSE / "django" / "docker-compose.yml", profiles=("debug",), keep_host_ports=True)
    assert result.document["services"]["mailhog"]["ports"] == ["0.0.0.0:8025:8025"]  # as Compose publishes it
    assert result.document["services"]["db"]["ports"] == ["0.0.0.0:5432:5432"]
    assert result.document["services"]["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_node_mongo(tmp_path: Path) -> None:
    result = imported(COMPOSE / "node-mongo" / "compose.yaml")
    doc = result.document
    assert doc["name"] == "todo-app"  # Compose's `name:`, made a valid blueprint name
    web, mongo, express = (doc["services"][s] for s in ("web", "mongo", "mongo-express"))
    assert web["environment"]["SESSION_SECRET"] == "${SESSION_SECRET}"  # Compose takes it from the shell
    assert web["ports"] == [3000, 9229] and web["tmpfs"] == ["/tmp"]
    assert web["volumes"] == ["./web/src:/usr/src/app/src:ro"]
    assert web["networks"] == {"front": {"aliases": ["todo"]}, "back": None}
    assert web["depends_on"] == {"mongo": "started"}  # the short form waits for the start only, as in Compose
    assert web["labels"] == {"com.example.team": "todo"}
    assert mongo["tmpfs"] == ["/data/configdb:size=10485760"] and mongo["ready"]["timeout"] == "90s"
    assert express["ports"] == [8081, 8082]  # a range, expanded
    assert express["networks"] == {"back": {"aliases": ["Mongo.Express"]}}  # renamed: the old DNS name kept
    assert express["depends_on"] == {"mongo": "ready"}
    assert doc["networks"] == {"front": None, "back": {"internal": True}}
    notes = "\n".join(result.notes)
    assert web["init"] is True  # carried over
    for expected in ("volumes.mongo-data.external", "anonymous volume /usr/src/app/node_modules",
                     "services.Mongo.Express.depends_on.mongo.restart", "published '9229'"):
        assert expected in notes, expected
    assert sum("8081-8082" in n for n in result.notes) == 1
    bp = load_text(result.text(), copy("node-mongo", tmp_path))
    assert bp.networks["back"].internal


def test_kafka_with_healthchecks(tmp_path: Path) -> None:
    result = imported(COMPOSE / "kafka" / "compose.yml")
    services = result.document["services"]
    assert "kowl" not in services
    assert services["init-topics"]["kind"] == "job"
    assert services["init-topics"]["command"].endswith("--replication-factor 1")  # block scalar, trimmed
    assert services["producer"]["depends_on"] == {"init-topics": "completed", "schema-registry": "ready"}
    assert services["broker"]["ready"] == {"exec": ["/bin/sh", "-c", "kafka-topics --bootstrap-server broker:29092 --list"],
                                           "timeout": "90s"}
    assert services["zookeeper"]["ready"] == {"exec": ["bash", "-c", "echo ruok | nc localhost 2181 | grep imok"]}
    assert services["consumer"]["replicas"] == 3 and services["consumer"]["ready"] == {"healthcheck": False}
    assert services["broker"]["environment"]["KAFKA_BROKER_ID"] == "1"
    assert services["broker"]["ulimits"] == {"nofile": {"soft": 65536, "hard": 65536}}  # carried over
    assert not any("services.broker.ulimits" in n for n in result.notes)
    assert any("services.producer.restart" in n for n in result.notes)
    assert set(load_text(result.text(), copy("kafka", tmp_path)).services) == set(services)


# -- single forms ----------------------------------------------------------------------------------------------
def doc_of(text: str, tmp_path: Path, **options: Any) -> ComposeImport:
    data = yaml.safe_load(textwrap.dedent(text))
    return from_compose(data, Marks("compose.yaml"), tmp_path, **options)


@pytest.mark.parametrize(("ports", "expected"), [
    (["80"], [80]),
    (["53/udp", "127.0.0.1::81"], ["53/udp", 81]),
    (["[::1]:8080:80"], ["[::1]:8080:80"]),
    (["9000-9001:8000-8001"], ["0.0.0.0:9000:8000", "0.0.0.0:9001:8001"]),
    ([{"target": 80, "published": 8080}], ["0.0.0.0:8080:80"]),
    ([{"target": 3306, "host_ip": "127.0.0.1", "protocol": "tcp"}], [3306]),  # no published port: any
    # a range of host ports for one container port: Compose takes a free one of them (it was left out)
    (["127.0.0.1:9090-9091:8080"], ["127.0.0.1:9090:8080"]),
    ([{"target": 8080, "published": "18080-18081", "host_ip": "127.0.0.1"}], ["127.0.0.1:18080:8080"]),
])
def test_port_forms_kept(tmp_path: Path, ports: list[Any], expected: list[Any]) -> None:
    doc = doc_of("services: {a: {image: i}}", tmp_path, keep_host_ports=True).document
    doc = from_compose({"services": {"a": {"image": "i", "ports": ports}}}, Marks("c"), tmp_path,
                       keep_host_ports=True).document
    assert doc["services"]["a"]["ports"] == expected


def test_healthcheck_forms(tmp_path: Path) -> None:
    result = doc_of("""
        services:
          a: {image: i, healthcheck: {test: [NONE]}}
          b: {image: i, healthcheck: {interval: 2s, retries: 5}}
          c: {image: i, healthcheck: {test: "exit 0", interval: 1m, retries: 1}}
          d: {image: i, depends_on: {e: {condition: service_healthy}}}
          e: {image: i}
          f: {image: i, healthcheck: {test: [WHAT, x]}}
        """, tmp_path)
    s = result.document["services"]
    assert s["a"]["ready"] == {"healthcheck": False}  # the image's own HEALTHCHECK turned off, as Compose does
    assert s["b"]["ready"] == {"healthcheck": True, "timeout": "10s"}  # timing only: the image's own check
    assert s["c"]["ready"] == {"exec": ["/bin/sh", "-c", "exit 0"]}  # 60s: envkit's default, left out
    assert s["e"]["ready"] == "healthcheck"  # d waits for it to be healthy: by the image's HEALTHCHECK
    assert any("services.f.healthcheck: cannot read healthcheck test" in n for n in result.notes)


def test_names_are_made_valid_and_references_follow(tmp_path: Path) -> None:
    doc = doc_of("""
        name: My Project
        services:
          Web.App: {image: i, depends_on: [DB]}
          DB: {image: i, volumes: ["Data_1:/d"]}
        volumes: {Data_1: {}}
        """, tmp_path).document
    assert doc["name"] == "my-project"
    assert doc["services"]["web-app"]["depends_on"] == {"db": "started"}
    assert doc["services"]["web-app"]["networks"] == {"default": {"aliases": ["Web.App"]}}
    assert doc["services"]["db"]["volumes"] == ["data_1:/d"] and doc["volumes"] == {"data_1": None}


@pytest.mark.parametrize("text", ["[]", "services: {}", "name: x", "services: [a]"])
def test_not_a_compose_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match="not a compose file"):
        doc_of(text, tmp_path)


def test_a_missing_env_file_is_noted(tmp_path: Path) -> None:
    result = doc_of("services: {a: {image: i, env_file: [.env, {path: opt.env, required: false}]}}", tmp_path)
    assert [n for n in result.notes if "env_file" in n] == [
        "services.a.env_file[0]: .env: cannot be read; its variables are missing (put them under environment:)"]


# -- the command ---------------------------------------------------------------------------------------------
def test_the_command_writes_the_blueprint_and_lists_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(COMPOSE / "node-mongo", tmp_path / "nm")
    assert main(["import", str(tmp_path / "nm")]) == 0  # a folder: its compose.yaml
    out, err = capsys.readouterr()
    assert out.startswith("# Imported by `envkit import`") and yaml.safe_load(out)["name"] == "todo-app"
    assert "note:" in err and "blueprint 'todo-app', 3 services; validates" in err
    assert main(["import", str(tmp_path / "nm" / "compose.yaml"), "-o", str(tmp_path / "out" / "bp.yaml")]) == 2
    (tmp_path / "out").mkdir()
    assert main(["import", str(tmp_path / "nm" / "compose.yaml"), "-o", str(tmp_path / "out" / "bp.yaml")]) == 0
    assert "build: ../nm/web" in (tmp_path / "out" / "bp.yaml").read_text()  # relative to where it was written
    assert main(["validate", str(tmp_path / "out" / "bp.yaml")]) == 0


def test_the_command_lists_what_still_needs_an_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    build: ./missing\n", encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "to fix: services.a.build: build context './missing' is not a folder" in err
    assert "needs 1 edit(s) before it validates" in err
    assert main(["import", str(tmp_path / "nowhere")]) == 3
    assert "no such file or folder" in capsys.readouterr().err


def test_what_compose_itself_refuses_is_an_error_naming_line_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          api:
            image: i
            enviroment: {A: b}
            build: {context: ., dockerfle: Dockerfile.dev}
            healthcheck: {test: [CMD, "true"], retires: 5}
            depends_on: [queu]
          queue:
            image: redis
            volumes: [cache:/data]
            depends_on: {api: {condition: service_started, requierd: false}}
          debug:
            image: i
            profiles: [debug]
            comand: sleep infinity
        secrest: {}
        """), encoding="utf-8")
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "bp.yaml")]) == 3
    _, err = capsys.readouterr()
    assert err == textwrap.dedent("""\
        error: invalid compose file (8 problems):
          compose.yaml:4:5 services.api.enviroment: unknown Compose key 'enviroment' (did you mean 'environment'?)
          compose.yaml:5:25 services.api.build.dockerfle: unknown Compose key 'dockerfle' (did you mean 'dockerfile'?)
          compose.yaml:6:40 services.api.healthcheck.retires: unknown Compose key 'retires' (did you mean 'retries'?)
          compose.yaml:7:18 services.api.depends_on[0]: unknown service 'queu' (did you mean 'queue'?)
          compose.yaml:10:15 services.queue.volumes[0]: undefined volume 'cache' (declare it under the top-level volumes:)
          compose.yaml:11:52 services.queue.depends_on.api.requierd: unknown Compose key 'requierd' (did you mean 'required'?)
          compose.yaml:15:5 services.debug.comand: unknown Compose key 'comand' (did you mean 'command'?)
          compose.yaml:16:1 secrest: unknown Compose key 'secrest' (did you mean 'secrets'?)
        """).replace("compose.yaml", str(tmp_path / "compose.yaml"))
    assert not (tmp_path / "bp.yaml").exists()


def test_a_key_compose_knows_but_envkit_cannot_carry_is_a_note(tmp_path: Path) -> None:
    result = doc_of("services: {a: {image: i, cpu_shares: 512, oom_score_adj: 5, x-mine: 1}}", tmp_path)
    assert result.notes == ("services.a.cpu_shares: not carried over: envkit has no equivalent",
                            "services.a.oom_score_adj: not carried over: envkit has no equivalent")


def test_secrets_and_configs_from_files_are_mounted_read_only_where_compose_puts_them(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "nginx.conf").write_text("server {}\n", encoding="utf-8")
    (tmp_path / "key.txt").write_text("s3cret\n", encoding="utf-8")
    result = doc_of("""
        services:
          web:
            image: i
            volumes: [./conf:/etc/extra]
            secrets: [api_key, {source: api_key, target: key2, mode: 0400}, {source: token}]
            configs: [{source: site, target: /etc/nginx/sites-enabled/default}, site]
        secrets:
          api_key: {file: ./key.txt}
          token: {environment: TOKEN}
        configs:
          site: {file: conf/nginx.conf}
        """, tmp_path)
    assert result.document["services"]["web"]["volumes"] == [
        "./conf:/etc/extra", "./key.txt:/run/secrets/api_key:ro", "./key.txt:/run/secrets/key2:ro",
        "./conf/nginx.conf:/etc/nginx/sites-enabled/default:ro", "./conf/nginx.conf:/site:ro"]
    assert result.notes == (
        "services.web.secrets[1].mode: not carried over: the file is mounted as it is on this machine",
        "services.web.secrets[2]: secret 'token' (environment) not carried over: only one from a file: is mounted")
    text = result.text()
    assert "secrets:" not in text.split("services:")[0].replace("# note", "")  # nothing at the top level
    load_text(text, tmp_path)  # it validates where it was imported
    with pytest.raises(BlueprintError, match=r"services.web.configs\[0\]: undefined config 'sites'"):
        doc_of("services: {web: {image: i, configs: [sites]}}\nconfigs: {site: {file: x}}", tmp_path)


def test_an_empty_entrypoint_is_carried_over(tmp_path: Path) -> None:
    # Compose's way to run a debug shell in an image that has an ENTRYPOINT; left out, the ENTRYPOINT ran
    doc = doc_of("services: {debug: {image: i, entrypoint: [], command: [sleep, infinity]}}", tmp_path).document
    assert doc["services"]["debug"]["entrypoint"] == [] and doc["services"]["debug"]["command"] == ["sleep", "infinity"]
    assert load_text(ComposeImport(doc).text(), tmp_path).services["debug"].entrypoint == ()


def test_a_host_port_range_for_one_port_is_published_with_a_note(tmp_path: Path) -> None:
    result = doc_of("services: {a: {image: i, ports: [{target: 8080, published: 18080-18081}, '9090-9091:80']}}",
                    tmp_path)
    assert result.document["services"]["a"]["ports"] == [8080, 80]
    assert result.document["outputs"] == {"A_8080": "${services.a.host}:${services.a.ports.8080}",
                                          "A_80": "${services.a.host}:${services.a.ports.80}"}
    assert "services.a.ports[0]: host ports 18080-18081: Compose takes a free one of the range; envkit the " \
           "first, 18080" in result.notes
    bad = doc_of("services: {a: {image: i, ports: [{target: 80, published: x}, '9000-9002:80-81']}}", tmp_path)
    assert "ports" not in bad.document["services"]["a"]
    assert bad.notes == ("services.a.ports[0]: cannot read published port 'x'",
                         "services.a.ports[1]: port '9000-9002:80-81': the host and container ranges differ in length")


def test_the_compose_files_dotenv_is_named_when_the_blueprint_goes_elsewhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a:\n    image: i\n    environment: {PW: '${PW:?set PW}', HI: '${HI:-hi}'}\n", encoding="utf-8")
    (tmp_path / ".env").write_text("PW=s3cret\nHI=hello\n", encoding="utf-8")
    (tmp_path / "envkit").mkdir()
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "envkit" / "bp.yaml")]) == 0
    err = capsys.readouterr().err
    dotenv = tmp_path / ".env"
    assert (f"note: {dotenv}: Compose reads it for ${{VAR}}, but it is not beside the blueprint: bring it up with "
            f"`envkit up {tmp_path / 'envkit' / 'bp.yaml'} --env-file {dotenv}` (pytest: --envkit-env-file={dotenv}), "
            "or copy it there") in err
    assert err.rstrip().endswith(f"validates (with --env-file {dotenv})")  # as the command it names would load it
    assert load(tmp_path / "envkit" / "bp.yaml", {}, [dotenv]).services["a"].environment == (
        ("HI", "hello"), ("PW", "s3cret"))
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "bp.yaml")]) == 0  # beside it: read as it is
    assert ".env" not in capsys.readouterr().err


def test_a_variable_passed_by_name_is_noted_as_empty_when_unset(tmp_path: Path) -> None:
    # `environment: [LOG_LEVEL]` leaves LOG_LEVEL out of the container when it is unset; ${LOG_LEVEL} is ""
    result = doc_of("services: {a: {image: i, environment: [LOG_LEVEL, DEBUG, MODE=x]}}", tmp_path)
    assert result.document["services"]["a"]["environment"] == {"LOG_LEVEL": "${LOG_LEVEL}", "DEBUG": "${DEBUG}",
                                                               "MODE": "x"}
    assert result.notes == ("services.a.environment: LOG_LEVEL, DEBUG: taken from the environment as ${NAME}, which "
                            "is set but empty when NAME is unset (Compose leaves such a variable out of the container)",)


def test_the_images_healthcheck_turned_off_round_trips_as_compose_disable(tmp_path: Path) -> None:
    bp = load_text("name: w\nservices:\n  worker: {image: 'app:1', ready: {healthcheck: false}}\n", tmp_path / "bp")
    compose = yaml.safe_load(to_compose(bp, {}).text())
    assert compose["services"]["worker"]["healthcheck"] == {"disable": True}
    assert model(round_trip(bp, tmp_path)) == model(bp)


def test_a_single_quoted_env_file_value_stays_literal(tmp_path: Path) -> None:
    # Compose interpolates "${X}" and ${X} in an env file, not '${X}': a password with a $ in it
    (tmp_path / "app.env").write_text("PW='pa${ss}w$rd'\nURL=\"http://${HOST:-db}/\"\n", encoding="utf-8")
    source = tmp_path / "compose.yaml"
    source.write_text("services: {a: {image: i, env_file: app.env}}\n", encoding="utf-8")
    result = imported(source)
    assert result.document["services"]["a"]["environment"] == {"PW": "pa$${ss}w$$rd", "URL": "http://${HOST:-db}/"}
    assert load_text(result.text(), tmp_path / "bp").services["a"].environment == (
        ("PW", "pa${ss}w$rd"), ("URL", "http://db/"))


def test_scripts_mounted_at_docker_entrypoint_initdb_d_get_a_note_on_snapshots(tmp_path: Path) -> None:
    (tmp_path / "initdb").mkdir()
    (tmp_path / "initdb" / "01.sql").write_text("CREATE TABLE t (x int);\n", encoding="utf-8")
    (tmp_path / "extra.sql").write_text("CREATE TABLE u (x int);\n", encoding="utf-8")
    compose = tmp_path / "compose.yaml"
    compose.write_text(textwrap.dedent("""\
        services:
          db:
            image: postgres:16
            volumes:
              - ./initdb:/docker-entrypoint-initdb.d:ro
              - ./extra.sql:/docker-entrypoint-initdb.d/99-extra.sql:ro
          cache:
            image: redis:7
            volumes: ["./initdb:/data"]
        """), encoding="utf-8")
    result = imported(compose)
    notes = [n for n in result.notes if "--snapshot" in n]
    assert len(notes) == 1 and "services.db.volumes[0]" in notes[0]  # once per service, where it is mounted
    assert "snapshot" not in result.document["services"]["db"]  # a note, not a change: snapshots stay opt-in
    bp = load_text(result.text(), tmp_path)
    assert bp.services["db"].initialises and not bp.services["cache"].initialises


VARIABLE_COMPOSE = """\
    name: ${PROJECT:-notes}
    services:
      db:
        image: mariadb:11
        environment: {MARIADB_PASSWORD: "${DB_PASSWORD:?set it in .env}"}
        ports: ["${DB_PORT:-3306}:3306", "127.0.0.1:${WEB_PORT}:80", {target: 8000, published: "${API_PORT:-8000}"}]
        volumes: ["${DATA_DIR:-./data}:/var/lib/mysql", "${INIT_DIR:-./initdb}:/docker-entrypoint-initdb.d:ro"]
        stop_grace_period: ${GRACE:-5s}
        deploy: {replicas: "${REPLICAS:-1}"}
        healthcheck: {test: [CMD-SHELL, "echo $$HOME; mariadb-admin ping"], interval: "${HC_INTERVAL:-2s}"}
    """


def test_values_read_through_variables_are_read_with_them_as_compose_does(tmp_path: Path) -> None:
    # "${DB_PORT:-3306}:3306" and "${DATA_DIR:-./data}:/data" are everyday Compose: the importer reads
    # them after interpolation (they were dropped, or refused as an undefined volume '${DATA_DIR')
    result = doc_of(VARIABLE_COMPOSE, tmp_path, variables={"WEB_PORT": "8081", "HC_INTERVAL": "4s"})
    assert result.document["name"] == "notes"
    db = result.document["services"]["db"]
    assert db["ports"] == [3306, 80, 8000]
    assert db["volumes"] == ["./data:/var/lib/mysql", "./initdb:/docker-entrypoint-initdb.d:ro"]
    assert db["stop_grace_period"] == "5s" and "replicas" not in db  # "1", read as Compose does: one
    assert db["ready"] == {"exec": ["/bin/sh", "-c", "echo $$HOME; mariadb-admin ping"], "timeout": "12s"}
    assert db["environment"] == {"MARIADB_PASSWORD": "${DB_PASSWORD:?set it in .env}"}  # carried: read at up
    read = [n for n in result.notes if "read with" in n]
    assert [n.split(":", 1)[0] for n in read] == ["services.db.ports", "services.db.volumes",
                                                  "services.db.stop_grace_period", "services.db.deploy",
                                                  "services.db.healthcheck"]
    assert not any("cannot read" in n for n in result.notes)
    kept = doc_of(VARIABLE_COMPOSE, tmp_path, variables={"WEB_PORT": "8081"}, keep_host_ports=True)
    assert kept.document["services"]["db"]["ports"] == ["0.0.0.0:3306:3306", "127.0.0.1:8081:80",
                                                        "0.0.0.0:8000:8000"]


def test_a_required_variable_that_is_unset_in_a_read_value_is_a_note(tmp_path: Path) -> None:
    result = doc_of("services: {a: {image: i, ports: ['${PORT:?PORT must be set}:80']}}", tmp_path)
    assert result.document["services"]["a"]["ports"] == [80]
    assert "services.a.ports[0]: PORT must be set (required by ${PORT:?...}): read as empty" in result.notes


def test_import_reads_the_env_file_beside_the_compose_file_and_its_project_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(VARIABLE_COMPOSE), encoding="utf-8")
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=fromdotenv\nDB_PASSWORD=pw\nDATA_DIR=./state\n",
                                   encoding="utf-8")
    (tmp_path / "state").mkdir()
    (tmp_path / "initdb").mkdir()
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "bp.yaml")]) == 0
    err = capsys.readouterr().err
    assert "blueprint 'fromdotenv', 1 services; validates" in err, err  # Compose's project name: its .env first
    assert load(tmp_path / "bp.yaml").services["db"].volumes[0].source.endswith("/state")


def test_two_host_bindings_of_one_container_port_publish_it_once(tmp_path: Path) -> None:
    # Compose publishes "8080:80" and "127.0.0.1::80" both; a blueprint publishes a container port once
    result = doc_of("services: {web: {image: i, ports: ['8080:80', '127.0.0.1::80', '53:53/udp', 53]}}", tmp_path)
    assert result.document["services"]["web"]["ports"] == [80, "53/udp", 53]
    assert "services.web.ports[1]: container port 80/tcp is published by ports[0] already: envkit publishes it " \
           "once" in result.notes
    load_text(result.text(), tmp_path / "bp")
    kept = doc_of("services: {web: {image: i, ports: ['8080:80', '127.0.0.1::80']}}", tmp_path, keep_host_ports=True)
    assert kept.document["services"]["web"]["ports"] == ["0.0.0.0:8080:80"]


EXTENDS_COMPOSE = """\
    services:
      api:
        build: ./app
        command: ["python3", "app.py"]
        environment: {A: "1", B: "2"}
        ports: ["8000", "9000:9000"]
        volumes: ["data:/data", "./app:/src:ro"]
        networks: [back]
        depends_on: {db: {condition: service_healthy}}
        healthcheck: {test: [CMD, "true"], interval: 2s}
        labels: [l1=a]
      db:
        image: mariadb:11
        healthcheck: {test: [CMD, "true"]}
      worker:
        extends: api
        command: python3 worker.py
        environment: [B=3, C=4]
        ports: ["8000", "7000"]
        volumes: ["other:/data"]
        networks: [front]
        healthcheck: {interval: 5s}
        labels: {l2: b}
      beat:
        extends: {service: worker}
        environment: {D: "5"}
      third:
        extends: {file: common.yml, service: base}
        environment: {X: y}
    networks: {back: {}, front: {}}
    volumes: {data: {}, other: {}}
    """


def test_extends_merges_the_base_service_as_compose_does(tmp_path: Path) -> None:
    # `docker compose config` of this file gives the same services (checked with docker-compose 5.6)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (tmp_path / "common.yml").write_text("services:\n  base:\n    image: debian:bookworm-slim\n"
                                         "    environment: [FROM_FILE=1]\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(EXTENDS_COMPOSE), encoding="utf-8")
    result = imported(tmp_path / "compose.yaml")
    worker = result.document["services"]["worker"]
    assert worker["build"] == "./app" and worker["command"] == "python3 worker.py"
    assert worker["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert worker["ports"] == [8000, 9000, 7000]
    assert worker["volumes"] == ["other:/data", "./app:/src:ro"]  # merged by target: the local one wins
    assert worker["networks"] == ["back", "front"]
    assert worker["depends_on"] == {"db": "ready"}
    assert worker["labels"] == {"l1": "a", "l2": "b"}
    assert worker["ready"] == {"exec": ["true"], "timeout": "15s"}  # interval 5s, the base's test
    beat = result.document["services"]["beat"]  # a base that extends another
    assert beat["command"] == "python3 worker.py" and beat["environment"] == {"A": "1", "B": "3", "C": "4", "D": "5"}
    third = result.document["services"]["third"]
    assert third["image"] == "debian:bookworm-slim" and third["environment"] == {"FROM_FILE": "1", "X": "y"}
    assert not [n for n in result.notes if ".extends" in n]
    load_text(result.text(), tmp_path)


def test_extends_of_what_is_not_there_is_an_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          a: {image: i, extends: {service: apii}}
          b: {extends: c}
          c: {extends: b}
          d: {image: i, extends: {file: nowhere.yml, service: x}}
          api: {image: i}
        """), encoding="utf-8")
    with pytest.raises(BlueprintError) as caught:
        imported(tmp_path / "compose.yaml")
    assert [str(p).split("/")[-1] for p in caught.value.problems] == [
        "compose.yaml:2:17 services.a.extends: service 'apii' is not defined (did you mean 'api'?)",
        "compose.yaml:3:7 services.b.extends: extends forms a cycle: b -> c -> b",
        "compose.yaml:4:7 services.c.extends: extends forms a cycle: c -> b -> c",
        "compose.yaml:5:17 services.d.extends: cannot read nowhere.yml",
    ]


def test_a_base_from_a_file_in_another_folder_keeps_its_paths(tmp_path: Path) -> None:
    # Compose resolves a base's relative paths against the base's own file
    (tmp_path / "common" / "app").mkdir(parents=True)
    (tmp_path / "common" / "app" / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (tmp_path / "common" / "base.yml").write_text(textwrap.dedent("""\
        services:
          app:
            build: ./app
            env_file: app.env
            volumes: ["./app:/src:ro", "cache:/cache"]
        """), encoding="utf-8")
    (tmp_path / "common" / "app.env").write_text("FROM_BASE=1\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    extends: {file: common/base.yml, service: app}\n"
                                           "volumes: {cache: {}}\n", encoding="utf-8")
    web = imported(tmp_path / "compose.yaml").document["services"]["web"]
    assert web["build"] == "./common/app" and web["environment"] == {"FROM_BASE": "1"}
    assert web["volumes"] == ["./common/app:/src:ro", "cache:/cache"]


def test_reset_and_override_tags_shape_what_extends_takes(tmp_path: Path) -> None:
    # Compose's !reset drops an inherited value, !override replaces it instead of merging
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          api:
            image: app:1
            ports: ["8000"]
            environment: {A: "1", B: "2"}
            healthcheck: {test: [CMD, "true"], interval: 2s}
            labels: {team: x}
          worker:
            extends: api
            ports: !reset []
            environment: !override {C: "3"}
            healthcheck: !reset null
            labels: !reset {}
          lone:
            image: app:1
            environment: !override {D: "4"}
            ports: !reset ["9000"]
        """), encoding="utf-8")
    source = read_source(tmp_path / "compose.yaml", compose=True)
    result = from_compose(source.data, source.marks, source.directory)
    worker = result.document["services"]["worker"]
    assert worker["environment"] == {"C": "3"}
    assert "ports" not in worker and "ready" not in worker and "labels" not in worker
    assert result.document["services"]["lone"]["environment"] == {"D": "4"}  # nothing to merge: the value
    assert "ports" not in result.document["services"]["lone"]
    with pytest.raises(BlueprintError, match=r"tag '!reset'"):  # a blueprint has no such tags
        read_source(tmp_path / "compose.yaml")


def test_a_mariadb_project_seeded_the_compose_way(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/compose/mariadb-notes: anchors, env_file, .env with COMPOSE_PROJECT_NAME, extends with !reset,
    # "${WEB_PORT:-8080}:80" beside "127.0.0.1::80", initdb scripts; written into a folder of its own
    for name in ("COMPOSE_PROJECT_NAME", "WEB_PORT", "DB_VOLUME", "DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    project = copy("mariadb-notes", tmp_path)
    (project / "envkit").mkdir()
    assert main(["import", str(project), "-o", str(project / "envkit" / "blueprint.yaml")]) == 0
    err = capsys.readouterr().err
    assert f"blueprint 'notes', 6 services; validates (with --env-file {project / '.env'})" in err, err
    bp = load(project / "envkit" / "blueprint.yaml", env_files=[project / ".env"])
    assert [p.container for p in bp.services["web"].ports] == [80]
    assert bp.services["db"].initialises and bp.services["db"].volumes[0].source == "dbdata"
    worker = bp.services["worker"]
    assert worker.ports == () and dict(worker.environment)["APP_NAME"] == "notes-api"
    assert {d.service: d.condition for d in worker.depends_on} == {"db": "ready", "cache": "ready",
                                                                    "migrate": "completed"}
    assert bp.services["migrate"].kind == "job"


def test_what_compose_grants_is_allowed_in_the_blueprint_and_noted(tmp_path: Path) -> None:
    # cap_add and privileged were carried over, then refused by the blueprint ("needs 1 edit"): as for host paths
    result = doc_of("""\
        services:
          db: {image: i, cap_add: [SYS_NICE]}
          vpn: {image: i, privileged: true, ports: ["0.0.0.0:51820:51820/udp"]}
          web: {image: i, ports: ["8080:80"]}
        """, tmp_path, keep_host_ports=True)
    services = result.document["services"]
    assert services["db"]["allow"] == ["capabilities"]
    assert services["vpn"]["allow"] == ["privileged", "public-ports"]
    assert services["web"]["allow"] == ["public-ports"]  # Compose publishes "8080:80" on every address
    assert "services.db: adds capabilities: 'allow: [capabilities]' added; review it" in result.notes
    load_text(result.text(), tmp_path / "bp")
    assert "allow" not in doc_of("services: {web: {image: i, ports: ['8080:80']}}", tmp_path).document["services"]["web"]


def test_a_key_envkit_does_without_is_noted_with_the_blueprints_way(tmp_path: Path) -> None:
    result = doc_of("services: {db: {image: i, extra_hosts: ['h:1.2.3.4'], tty: true}}", tmp_path)
    assert "services.db.extra_hosts: not carried over: services reach each other by service name" in result.notes
    assert "services.db.tty: not carried over: use `envkit exec -t RUN SERVICE -- CMD`" in result.notes


def test_a_read_only_root_file_system_and_init_are_carried_over(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  app:\n    image: nginx:1\n    read_only: true\n    tmpfs: [/tmp]\n"
                       "    init: true\n", encoding="utf-8")
    result = imported(compose)
    assert result.document["services"]["app"]["read_only"] is True
    assert result.document["services"]["app"]["init"] is True
    assert not [n for n in result.notes if "read_only" in str(n) or "init" in str(n)]
    bp = load_text(result.text(), tmp_path / "out")
    assert bp.services["app"].read_only and bp.services["app"].init
    back = to_compose(bp, image_tags(bp)).document["services"]["app"]  # and back
    assert back["read_only"] is True and back["init"] is True


def test_dropped_capabilities_are_carried_over_and_need_no_allowance(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  app:\n    image: nginx:1\n    cap_drop: [ALL]\n", encoding="utf-8")
    result = imported(compose)
    assert result.document["services"]["app"]["cap_drop"] == ["ALL"]
    assert not [n for n in result.notes if "cap_drop" in str(n)]
    bp = load_text(result.text(), tmp_path / "out")  # validates: no allow: for taking rights away
    assert bp.services["app"].cap_drop == ("ALL",) and bp.services["app"].allow == ()
    assert to_compose(bp, image_tags(bp)).document["services"]["app"]["cap_drop"] == ["ALL"]


@pytest.mark.parametrize(("shm", "tmpfs"), [("256m", ["/tmp", "/dev/shm:size=268435456"]),
                                            ("1gb", ["/tmp", "/dev/shm:size=1073741824"]),
                                            (67108864, ["/tmp", "/dev/shm:size=67108864"])])
def test_shm_size_becomes_a_tmpfs_at_dev_shm_of_that_size(tmp_path: Path, shm: Any, tmpfs: list[str]) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(yaml.safe_dump({"services": {"db": {"image": "postgres:16", "shm_size": shm, "tmpfs": ["/tmp"]}}}),
                       encoding="utf-8")
    result = imported(compose)
    assert result.document["services"]["db"]["tmpfs"] == tmpfs
    assert not [n for n in result.notes if "shm_size" in str(n)]
    assert dict(load_text(result.text(), tmp_path / "out").services["db"].tmpfs)["/dev/shm"] == tmpfs[1].split(":")[1]


def test_an_shm_size_that_is_no_size_is_a_note_and_a_tmpfs_at_dev_shm_wins(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a: {image: i, shm_size: lots}\n  b: {image: i, shm_size: 1g, tmpfs: ['/dev/shm:size=5m']}\n",
                       encoding="utf-8")
    result = imported(compose)
    assert [n.split(" ", 1)[1] for n in result.notes if "shm_size" in n] == [
        "services.a.shm_size: not carried over: 'lots' is not a size (e.g. 256m, 1gb, or bytes)"]
    assert "tmpfs" not in result.document["services"]["a"]
    assert result.document["services"]["b"]["tmpfs"] == ["/dev/shm:size=5m"]


def test_a_folder_with_an_override_file_is_imported_as_docker_compose_reads_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `docker compose up` in a folder reads compose.override.yaml over compose.yaml; it was left out silently
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          api: {image: "app:1", command: serve, environment: {A: "1"}, ports: ["8000"]}
        volumes: {data: {}}
        """), encoding="utf-8")
    (tmp_path / "compose.override.yaml").write_text(textwrap.dedent("""\
        services:
          api: {command: serve --debug, environment: {B: "2"}, ports: ["9229"]}
          mail: {image: "mailhog:1"}
        """), encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    services = yaml.safe_load(out)["services"]
    assert services["api"] == {"image": "app:1", "command": "serve --debug", "environment": {"A": "1", "B": "2"},
                               "ports": [8000, 9229]}
    assert "mail" in services
    assert f"note: {tmp_path / 'compose.override.yaml'}: merged over compose.yaml, as `docker compose` does" in err
    assert main(["import", str(tmp_path / "compose.yaml")]) == 0  # named: that file alone, as `docker compose -f`
    assert "mail" not in yaml.safe_load(capsys.readouterr().out)["services"]


def test_unset_variables_and_bare_dollar_names_read_as_compose_reads_them(tmp_path: Path) -> None:
    # "${ENV_FILE}:/app/.env" with ENV_FILE unset is ":/app/.env", which Compose refuses: it became a
    # volume named 'x'; `$API_PORT` is Compose's `${API_PORT}` too (the blueprint reads only the braced form)
    result = doc_of("""\
        services:
          a:
            image: i
            ports: ["$API_PORT:3001"]
            volumes: ["${ENV_FILE}:/app/.env"]
            environment: {URL: "http://$HOST:$$PORT/"}
        """, tmp_path, variables={"API_PORT": "7001"})
    a = result.document["services"]["a"]
    assert a["ports"] == [3001] and "volumes" not in a and "volumes" not in result.document
    assert "services.a.volumes[0]: cannot read volume ':/app/.env' (an empty source: is a variable unset?)" \
        in result.notes
    assert "services.a.volumes: ENV_FILE is not set: read as empty, as Compose reads it" in result.notes
    assert a["environment"] == {"URL": "http://${HOST}:$$PORT/"}  # carried, in the form a blueprint reads
    assert "services.a.ports: API_PORT is not set" not in "\n".join(result.notes)


def test_extends_merges_strings_builds_and_variable_sources_as_compose_does(tmp_path: Path) -> None:
    # `docker compose config` (5.6) of this file: web builds ./ctx for target dev (the string was its context;
    # the mapping replaced it, so web built "."), one mount at /data (the base's "${DATA:-./data}:/data" was
    # not read by target, so both were kept), tmpfs and env_file of both (the string was replaced) and
    # profiles of both (with --profile a alone, web was left out)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (tmp_path / "common.env").write_text("COMMON=1\n", encoding="utf-8")
    (tmp_path / "web.env").write_text("WEB=1\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          base:
            build: ./ctx
            env_file: common.env
            tmpfs: /run
            volumes: ["${DATA:-./data}:/data", "${LOGS:-./logs}:/logs"]
            profiles: [a]
          web:
            extends: base
            build: {target: dev}
            env_file: web.env
            tmpfs: /tmp
            volumes: ["./mine:/data"]
            profiles: [b]
        """), encoding="utf-8")
    web = imported(tmp_path / "compose.yaml", profiles=("a",)).document["services"]["web"]
    assert web["build"] == {"context": "./ctx", "target": "dev"}
    assert web["volumes"] == ["./mine:/data", "./logs:/logs"]
    assert web["tmpfs"] == ["/run", "/tmp"]
    assert web["environment"] == {"COMMON": "1", "WEB": "1"}


def test_an_override_file_merges_by_target_a_volume_written_with_a_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # the usual compose.override.yaml: the same target mounted from the working tree; it was mounted twice
    monkeypatch.delenv("SRC", raising=False)
    (tmp_path / "compose.yaml").write_text(
        'services:\n  api: {image: "app:1", volumes: ["${SRC:-./app}:/srv"]}\n', encoding="utf-8")
    (tmp_path / "compose.override.yaml").write_text(
        'services:\n  api: {volumes: ["./src:/srv:ro"]}\n', encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["services"]["api"]["volumes"] == ["./src:/srv:ro"]


def test_compose_profiles_of_the_dotenv_choose_the_profiles_as_for_compose(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # `docker compose config` reads COMPOSE_PROFILES from .env (and --profile instead of it); the import
    # left the service out; "*" is every profile
    for name in ("COMPOSE_PROFILES", "COMPOSE_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "compose.yaml").write_text(
        "services:\n  x: {image: a}\n  y: {image: b, profiles: [dev]}\n  z: {image: c, profiles: [other]}\n",
        encoding="utf-8")
    (tmp_path / ".env").write_text("COMPOSE_PROFILES=dev\nCOMPOSE_FILE=compose.yaml:dev.yaml\n", encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert sorted(yaml.safe_load(out)["services"]) == ["x", "y"]
    assert "COMPOSE_PROFILES=dev (the environment or the .env beside the compose file)" in err
    assert "COMPOSE_FILE=compose.yaml:dev.yaml" in err and "reads those files instead of compose.yaml" in err
    assert main(["import", str(tmp_path), "--profile", "other"]) == 0
    assert sorted(yaml.safe_load(capsys.readouterr().out)["services"]) == ["x", "z"]
    assert main(["import", str(tmp_path), "--profile", "*"]) == 0
    assert sorted(yaml.safe_load(capsys.readouterr().out)["services"]) == ["x", "y", "z"]


def test_a_folder_with_both_docker_compose_names_is_read_as_compose_reads_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # docker compose takes docker-compose.yml before docker-compose.yaml (and warns)
    for name in ("docker-compose.yaml", "docker-compose.yml"):
        (tmp_path / name).write_text(f"services:\n  x: {{image: '{name}'}}\n", encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["services"]["x"]["image"] == "docker-compose.yml"


def test_a_cycle_through_files_and_what_is_wrong_in_a_base_file_name_file_and_line(tmp_path: Path) -> None:
    # docker compose: "Circular reference"; it was a RecursionError, and a base file's problems had no line
    (tmp_path / "other.yml").write_text(textwrap.dedent("""\
        services:
          y:
            extends: {file: compose.yaml, service: x}
          z:
            extends: nothere
        """), encoding="utf-8")
    (tmp_path / "broken.yml").write_text("services:\n  b: [unclosed\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          x:
            image: a
            extends: {file: other.yml, service: y}
          w:
            image: a
            extends: {file: other.yml, service: z}
          v:
            image: a
            extends: {file: broken.yml, service: b}
        """), encoding="utf-8")
    with pytest.raises(BlueprintError) as caught:
        imported(tmp_path / "compose.yaml")
    assert [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems] == [
        "compose.yaml:4:5 services.x.extends: extends forms a cycle: other.yml:y -> compose.yaml:x -> other.yml:y",
        "compose.yaml:10:5 services.v.extends: cannot read broken.yml: broken.yml:3:1: expected ',' or ']', but got "
        "'<stream end>'",
        "other.yml:5:5 services.z.extends: service 'nothere' is not defined",
    ]


def test_what_is_wrong_in_an_override_file_is_named_in_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it was named at a line of compose.yaml (1:1 for a service only the override has)
    (tmp_path / "compose.yaml").write_text("services:\n  api:\n    image: app:1\n    network_mode: bridge\n",
                                           encoding="utf-8")
    (tmp_path / "compose.override.yaml").write_text(textwrap.dedent("""\
        services:
          api:
            depends_on: [nothere]
          mail:
            imagee: x
        """), encoding="utf-8")
    assert main(["import", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "compose.override.yaml:3:18 services.api.depends_on[0]: unknown service 'nothere'" in err
    assert "compose.override.yaml:5:5 services.mail.imagee: unknown Compose key 'imagee'" in err
    (tmp_path / "compose.override.yaml").write_text("services:\n  api:\n    stop_signal: SIGINT\n    platform: x\n",
                                                    encoding="utf-8")
    assert main(["import", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "compose.override.yaml:4:5 services.api.platform: not carried over" in err
    assert f"{tmp_path / 'compose.yaml'}:4:5 services.api.network_mode: not carried over" in err


def test_lists_inside_merged_mappings_are_appended_as_compose_does(tmp_path: Path) -> None:
    # `docker compose config` (5.6): web keeps the base's alias a1 (a name it is reached by) beside a2, and
    # the base's build arg Y; only a healthcheck's test is replaced
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          base:
            build: {context: ., args: [X=1, Y=2]}
            networks: {back: {aliases: [a1]}}
            healthcheck: {test: [CMD, "true"]}
          web:
            extends: base
            build: {args: {X: "3"}}
            networks: {back: {aliases: [a2]}}
            healthcheck: {test: [CMD, "false"]}
        networks: {back: {}}
        """), encoding="utf-8")
    web = imported(tmp_path / "compose.yaml").document["services"]["web"]
    assert web["networks"] == {"back": {"aliases": ["a1", "a2"]}}
    assert web["build"] == {"context": ".", "args": {"X": "3", "Y": "2"}}
    assert web["ready"]["exec"] == ["false"]


def test_a_base_in_another_folder_reads_its_variables_before_its_paths_move(tmp_path: Path) -> None:
    # Compose interpolates, then resolves a base's paths against its own file: ${SRC:-./app} is common/app
    # (it was left ./app, the extending file's folder); a variable set to an absolute path stays as it is
    (tmp_path / "common" / "app").mkdir(parents=True)
    (tmp_path / "common" / "app" / "Dockerfile").write_text("FROM debian:bookworm-slim\n", encoding="utf-8")
    (tmp_path / "common" / "base.yml").write_text(textwrap.dedent("""\
        services:
          app:
            build: ${CTX:-./app}
            volumes: ["${SRC:-./app}:/src:ro", "${LOGS}:/logs"]
        """), encoding="utf-8")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    extends: {file: common/base.yml, service: app}\n",
                                           encoding="utf-8")
    web = imported(tmp_path / "compose.yaml", variables={"LOGS": "/var/log/app"}).document["services"]["web"]
    assert web["build"] == "./common/app"
    assert web["volumes"] == ["./common/app:/src:ro", "/var/log/app:/logs"]
