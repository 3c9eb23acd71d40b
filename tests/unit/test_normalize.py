"""Plain data → typed model: short syntax expanded, defaults filled, paths resolved, problems collected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envkit.blueprint import Blueprint, Build, Mount, NetworkDef, Port, Probe, Service
from envkit.blueprint.model import Attachment, Dependency
from envkit.blueprint.normalize import normalize, parse_duration, parse_size
from envkit.blueprint.source import Marks
from envkit.errors import BlueprintError

LoadText = Callable[..., Blueprint]
DOCKERFILE = {"app/Dockerfile": "FROM python:3.12-slim\n"}


def service(load_text: LoadText, body: str, files: dict[str, str] | None = None) -> Service:
    """Load a blueprint holding one service ``svc`` whose YAML body (indented 4) is given."""
    text = "services:\n  svc:\n" + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    return load_text(text, files).services["svc"]


def problems(load_text: LoadText, text: str, files: dict[str, str] | None = None) -> list[str]:
    """Each problem as 'line:column key.path: message' (the file name left out)."""
    with pytest.raises(BlueprintError) as caught:
        load_text(text, files)
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


# -- build ----------------------------------------------------------------------------------------
def test_build_short_syntax_is_a_context_folder(load_text: LoadText) -> None:
    svc = service(load_text, "build: ./app", DOCKERFILE)
    assert svc.image is None
    assert svc.build is not None
    assert svc.build == Build(context=svc.build.context)
    assert svc.build.context.is_absolute() and svc.build.context.name == "app"


def test_build_long_syntax(load_text: LoadText) -> None:
    svc = service(load_text, """
build:
  context: app
  dockerfile: Dockerfile.test
  args: [VERSION=1.2, "EMPTY="]
  target: test
""", {"app/Dockerfile.test": "FROM scratch\n"})
    assert svc.build is not None
    assert (svc.build.dockerfile, svc.build.args, svc.build.target) == (
        "Dockerfile.test", (("EMPTY", ""), ("VERSION", "1.2")), "test")


def test_image_and_build_are_exclusive_and_one_is_needed(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          both: {image: x, build: ./app}
          neither: {command: [true]}
    """, DOCKERFILE) == [
        "3:10 services.both.image: use either 'image' or 'build', not both",
        "4:3 services.neither: a service needs 'image' or 'build'",
    ]


# -- ports ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "port"), [
    ("8080", Port(8080)),
    ('"8080"', Port(8080)),
    ('"18080:8080"', Port(8080, host=18080)),
    ("18080:8080", Port(8080, host=18080)),
    ("22:22", Port(22, host=22)),  # unquoted, and still not the YAML 1.1 base-60 number 1342
    ('"0.0.0.0::8080"', Port(8080, host_ip="0.0.0.0")),
    ('"127.0.0.1:5432:5432"', Port(5432, host=5432)),
    ('"[::1]:8080:80"', Port(80, host_ip="::1", host=8080)),
    ('"53/udp"', Port(53, protocol="udp")),
    ('"5353:53/udp"', Port(53, protocol="udp", host=5353)),
    ("{container: 80, host: 8000, host_ip: 0.0.0.0, protocol: udp}", Port(80, "udp", "0.0.0.0", 8000)),
    ("{container: 80}", Port(80)),
])
def test_ports(load_text: LoadText, text: str, port: Port) -> None:
    assert service(load_text, f"image: x\nallow: [public-ports]\nports: [{text}]").ports == (port,)


def test_published_ports_default_to_loopback_and_an_ephemeral_host_port(load_text: LoadText) -> None:
    (port,) = service(load_text, "image: x\nports: [8080]").ports
    assert (port.host_ip, port.host, port.key) == ("127.0.0.1", None, "8080/tcp")


def test_bad_ports_are_reported_on_the_item_in_short_syntax(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          svc:
            image: x
            ports: [abc, 70000, "70000:80", {container: 0}, {host: 80}, {container: 80, protocol: sctp}]
    """) == [
        "5:13 services.svc.ports[0]: invalid port 'abc': use 8080, \"18080:8080\", \"0.0.0.0::8080\" or 8080/udp",
        "5:18 services.svc.ports[1]: expected a container port (1..65535), got 70000",
        "5:25 services.svc.ports[2]: expected a host port (1..65535), got 70000",
        "5:38 services.svc.ports[3].container: expected a container port (1..65535), got 0",
        "5:53 services.svc.ports[4]: port needs 'container'",
        "5:81 services.svc.ports[5].protocol: expected tcp or udp, got 'sctp'",
    ]


# -- environment, labels, command ------------------------------------------------------------------
def test_environment_as_a_list(load_text: LoadText) -> None:
    svc = service(load_text, "image: x\nenvironment: [B=2, A=1, C=, D=x=y]")
    assert svc.environment == (("A", "1"), ("B", "2"), ("C", ""), ("D", "x=y"))


def test_environment_as_a_mapping_of_scalars(load_text: LoadText) -> None:
    svc = service(load_text, "image: x\nenvironment: {PORT: 5432, DEBUG: true, RATIO: 0.5, EMPTY: null, NAME: app}")
    assert svc.environment == (("DEBUG", "true"), ("EMPTY", ""), ("NAME", "app"), ("PORT", "5432"), ("RATIO", "0.5"))


def test_bad_environment_entries(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          a: {image: x, environment: [NO_EQUALS]}
          b: {image: x, environment: {LIST: [1], 1BAD: x}}
    """) == [
        "3:31 services.a.environment[0]: expected 'KEY=value', got 'NO_EQUALS'",
        "4:31 services.b.environment.LIST: expected a scalar value, got a list",
        "4:42 services.b.environment.1BAD: invalid environment variable name '1BAD'",
    ]


def test_commands_are_lists_of_words_or_split_like_a_shell(load_text: LoadText) -> None:
    assert service(load_text, "image: x\ncommand: python -c 'print(1)'").command == ("python", "-c", "print(1)")
    assert service(load_text, "image: x\ncommand: [sh, -c, 'exit 0']").command == ("sh", "-c", "exit 0")
    assert service(load_text, "image: x\nentrypoint: [tini, --]").entrypoint == ("tini", "--")


def test_an_empty_entrypoint_clears_the_images_in_either_form(load_text: LoadText) -> None:
    # Compose's `entrypoint: []` (a debug service: `command: sleep infinity` without the image's ENTRYPOINT)
    assert service(load_text, "image: x\nentrypoint: []").entrypoint == ()
    assert service(load_text, "image: x\nentrypoint: ''").entrypoint == ()
    assert problems(load_text, "services: {a: {image: x, ready: {exec: []}}}") == [
        "1:34 services.a.ready.exec: an exec probe needs a command"]
    assert problems(load_text, "services: {a: {image: x, seed: [{exec: {command: []}}]}}") == [
        "1:41 services.a.seed[0].exec.command: an exec step needs a command"]


def test_user_labels_may_not_use_envkits_namespace(load_text: LoadText) -> None:
    assert service(load_text, "image: x\nlabels: {team: core}").labels == (("team", "core"),)
    assert problems(load_text, "services: {a: {image: x, labels: {io.envkit.run: x}}}") == [
        "1:35 services.a.labels.io.envkit.run: label 'io.envkit.run' is inside envkit's own namespace "
        "'io.envkit.*'; choose another",
    ]


# -- depends_on -------------------------------------------------------------------------------------
def test_depends_on_list_means_ready(load_text: LoadText) -> None:
    bp = load_text("services: {db: {image: x}, cache: {image: x}, api: {image: x, depends_on: [db, cache]}}")
    assert bp.services["api"].depends_on == (Dependency("db"), Dependency("cache"))


def test_depends_on_mapping_with_conditions(load_text: LoadText) -> None:
    bp = load_text("""
        services:
          db: {image: x}
          cache: {image: x}
          migrate: {image: x, kind: job}
          api:
            image: x
            depends_on:
              db: {condition: ready}
              cache: started
              migrate: {condition: completed}
    """)
    assert bp.services["api"].depends_on == (Dependency("db"), Dependency("cache", "started"),
                                             Dependency("migrate", "completed"))
    assert bp.services["migrate"].kind == "job"


def test_depends_on_problems(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          db: {image: x}
          a: {image: x, depends_on: [db, db]}
          b: {image: x, depends_on: {db: {condition: healthy}}}
          c: {image: x, depends_on: db}
    """) == [
        "4:34 services.a.depends_on[1]: service 'db' listed twice",
        "5:35 services.b.depends_on.db.condition: unknown condition 'healthy'; use started, ready or completed",
        "6:17 services.c.depends_on: expected depends_on (a list or a mapping), got a string",
    ]


# -- probes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "probe"), [
    ("{tcp: 5432}", Probe("tcp", port=5432)),
    ("{http: 8080}", Probe("http", port=8080)),
    ("{http: {port: 8080, path: /health, status: 204, body: ok}}",
     Probe("http", port=8080, path="/health", status=204, body="ok")),
    ("{exec: [pg_isready, -U, app]}", Probe("exec", command=("pg_isready", "-U", "app"))),
    ("{exec: redis-cli ping}", Probe("exec", command=("redis-cli", "ping"))),
    ("{log: 'ready to accept connections'}", Probe("log", pattern="ready to accept connections")),
    ("healthcheck", Probe("healthcheck")),
    ("{healthcheck: true}", Probe("healthcheck")),
    ("{tcp: 5432, timeout: 500ms}", Probe("tcp", port=5432, timeout=0.5)),
    ("{tcp: 5432, timeout: 2m}", Probe("tcp", port=5432, timeout=120.0)),
    ("{tcp: 5432, timeout: 1m30s}", Probe("tcp", port=5432, timeout=90.0)),
    ("{tcp: 5432, timeout: 5}", Probe("tcp", port=5432, timeout=5.0)),
])
def test_probes(load_text: LoadText, text: str, probe: Probe) -> None:
    assert service(load_text, f"image: x\nready: {text}").ready == probe


def test_probes_default_to_a_minute_and_none_means_none(load_text: LoadText) -> None:
    assert service(load_text, "image: x\nready: {tcp: 1}").ready == Probe("tcp", timeout=60.0, port=1)
    assert service(load_text, "image: x\nready:").ready is None


def test_probe_problems(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          a: {image: x, ready: {tcp: 1, http: 2}}
          b: {image: x, ready: {log: '(unclosed'}}
          c: {image: x, ready: {healthcheck: yes please}}
          d: {image: x, ready: {tcp: 1, timeout: 10 minutes}}
          e: {image: x, ready: {htp: 1}}
    """) == [
        "3:17 services.a.ready: a probe needs exactly one of: tcp, http, exec, log, healthcheck",
        "4:25 services.b.ready.log: invalid regex: missing ), unterminated subpattern at position 0",
        "5:25 services.c.ready.healthcheck: use 'healthcheck: true' to wait for the image's own HEALTHCHECK "
        "('false' turns it off)",
        "6:33 services.d.ready.timeout: expected a duration like 30s, 500ms or 2m, got '10 minutes'",
        "7:17 services.e.ready: a probe needs exactly one of: tcp, http, exec, log, healthcheck",
        "7:25 services.e.ready.htp: unknown key 'htp' (did you mean 'http'?)",
    ]


@pytest.mark.parametrize(("value", "seconds"), [
    ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5), (10, 10.0), (0.25, 0.25),
    ("", None), ("10", None), ("fast", None), (-1, None), (True, None), ("2m 30s", None), (None, None),
])
def test_parse_duration(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("value", "size"), [
    ("512m", 512 * 1024**2), ("1g", 1024**3), ("256MiB", 256 * 1024**2), ("1.5g", int(1.5 * 1024**3)),
    ("64k", 65536), (1048576, 1048576), ("1048576", 1048576), ("lots", None), (0, None), (False, None),
])
def test_parse_size(value: Any, size: int | None) -> None:
    assert parse_size(value) == size


# -- volumes and tmpfs -----------------------------------------------------------------------------
def test_named_volume_mounts(load_text: LoadText) -> None:
    bp = load_text("""
        volumes: {data: {}}
        services:
          db:
            image: x
            volumes:
              - data:/var/lib/postgresql/data
              - data:/backup:ro
              - {type: volume, source: data, target: /more, read_only: true}
    """)
    assert bp.services["db"].volumes == (
        Mount("volume", "data", "/var/lib/postgresql/data"),
        Mount("volume", "data", "/backup", read_only=True),
        Mount("volume", "data", "/more", read_only=True),
    )


def test_bind_mounts_resolve_against_the_blueprint_folder(load_text: LoadText) -> None:
    svc = service(load_text, "image: x\nvolumes: ['./conf:/etc/app:ro', {type: bind, source: conf, target: /c}]",
                  {"conf/app.ini": ""})
    first, second = svc.volumes
    assert first.type == second.type == "bind"
    assert Path(first.source).is_absolute() and first.source == second.source
    assert Path(first.source).name == "conf"
    assert (first.target, first.read_only, second.read_only) == ("/etc/app", True, False)


def test_mount_problems(load_text: LoadText, tmp_path: Path) -> None:
    assert problems(load_text, """
        volumes: {data: {}}
        services:
          a: {image: x, volumes: ['data', 'data:/x:rx', 'data:relative', {type: tmpfs, target: /t}]}
          b: {image: x, volumes: ['./missing:/x']}
    """) == [
        "4:27 services.a.volumes[0]: invalid volume 'data': use 'name:/path', './file:/path' or add ':ro'",
        "4:35 services.a.volumes[1]: invalid volume 'data:/x:rx': use 'name:/path', './file:/path' or add ':ro'",
        "4:49 services.a.volumes[2]: mount target 'relative' must be an absolute path inside the container",
        "4:67 services.a.volumes[3].type: expected volume or bind, got 'tmpfs'",
        f"5:27 services.b.volumes[0]: bind mount source './missing' does not exist (looked at {tmp_path}/bp/missing)",
    ]


@pytest.mark.parametrize(("text", "tmpfs"), [
    ("/tmp", (("/tmp", ""),)),
    ("[/run, '/tmp:size=64m,mode=1777']", (("/run", ""), ("/tmp", "size=64m,mode=1777"))),
    ("{/tmp: size=64m}", (("/tmp", "size=64m"),)),
])
def test_tmpfs(load_text: LoadText, text: str, tmpfs: tuple[tuple[str, str], ...]) -> None:
    assert service(load_text, f"image: x\ntmpfs: {text}").tmpfs == tmpfs


# -- resources, replicas, misc ---------------------------------------------------------------------
def test_memory_cpus_and_replicas(load_text: LoadText) -> None:
    svc = service(load_text, "image: x\nmemory: 512m\ncpus: '0.5'\nreplicas: 3")
    assert (svc.memory, svc.cpus, svc.replicas) == (512 * 1024**2, 0.5, 3)
    svc = service(load_text, "image: x\ncpus: 2")
    assert (svc.memory, svc.cpus, svc.replicas) == (None, 2.0, 1)


def test_resource_problems(load_text: LoadText) -> None:
    assert problems(load_text, "services: {a: {image: x, memory: lots, cpus: -1, replicas: 65}}") == [
        "1:26 services.a.memory: expected a size like 256m or 1g, got 'lots'",
        "1:40 services.a.cpus: expected a number of CPUs from 0.01 to 1024, got -1",
        "1:50 services.a.replicas: expected a replica count (1..64), got 65",
    ]


def test_other_service_settings(load_text: LoadText) -> None:
    svc = service(load_text, """
image: x
kind: job
user: "1000:1000"
working_dir: /app
hostname: box
stop_grace_period: 10s
stop_signal: SIGINT
privileged: true
cap_add: [NET_ADMIN]
allow: [privileged, capabilities]
""")
    assert (svc.kind, svc.user, svc.working_dir, svc.hostname) == ("job", "1000:1000", "/app", "box")
    assert (svc.stop_grace_period, svc.stop_signal, svc.privileged, svc.cap_add) == (10.0, "SIGINT", True, ("NET_ADMIN",))


def test_defaults(load_text: LoadText) -> None:
    svc = service(load_text, "image: x")
    assert svc == Service(name="svc", image="x", build=None, networks=(Attachment("default"),))
    assert svc.stop_grace_period == 0.0  # killed at teardown unless asked otherwise


# -- networks and the blueprint itself ---------------------------------------------------------------
def test_services_without_networks_join_the_default_network(load_text: LoadText) -> None:
    bp = load_text("services: {a: {image: x}}")
    assert bp.networks == {"default": NetworkDef("default")}
    assert bp.services["a"].networks == (Attachment("default"),)


def test_declared_networks_with_aliases(load_text: LoadText) -> None:
    bp = load_text("""
        networks:
          back: {internal: true, labels: {tier: back}}
          front: {}
        services:
          db: {image: x, networks: [back]}
          api: {image: x, networks: {back: {aliases: [api-internal]}, front: {}}}
    """)
    assert bp.networks == {"back": NetworkDef("back", True, (("tier", "back"),)), "front": NetworkDef("front")}
    assert bp.services["db"].networks == (Attachment("back"),)
    assert bp.services["api"].networks == (Attachment("back", ("api-internal",)), Attachment("front"))


def test_the_default_network_is_added_when_any_service_needs_it(load_text: LoadText) -> None:
    bp = load_text("networks: {back: {}}\nservices: {db: {image: x, networks: [back]}, api: {image: x}}")
    assert sorted(bp.networks) == ["back", "default"]
    assert bp.services["api"].networks == (Attachment("default"),)
    assert bp.services["db"].networks == (Attachment("back"),)


def test_the_blueprint_is_named_after_its_folder_unless_named(load_text: LoadText, tmp_path: Path) -> None:
    assert load_text("services: {a: {image: x}}").name == "bp"
    assert load_text("name: shop\nservices: {a: {image: x}}").name == "shop"
    file = tmp_path / "My Shop.yaml"
    file.write_text("services: {a: {image: x}}\n")
    from envkit.blueprint import load

    assert load(file, {}).name == "my-shop"


def test_outputs_keep_their_templates(load_text: LoadText) -> None:
    bp = load_text("services: {db: {image: x, ports: [5432]}}\noutputs: {PORT: '${services.db.ports.5432}'}")
    assert bp.outputs == (("PORT", "${services.db.ports.5432}"),)


def test_every_problem_is_collected_with_its_position(load_text: LoadText) -> None:
    assert problems(load_text, """
        name: Bad Name
        versoin: 2
        services:
          Api: {image: x}
          db: {image: x, imagee: y, kind: daemon}
        outputs:
          bad-name: x
    """) == [
        "2:1 name: invalid name 'Bad Name': use up to 40 lowercase letters, digits, '-' and '_'",
        "3:1 versoin: unknown key 'versoin' (did you mean 'version'?)",
        "5:3 services.Api: invalid service name 'Api': use lowercase letters, digits, '-' and '_'",
        "6:18 services.db.imagee: unknown key 'imagee' (did you mean 'image'?)",
        "6:29 services.db.kind: expected 'service', 'job' or 'stub', got 'daemon'",
        "8:3 outputs.bad-name: output name 'bad-name' must be usable as an environment variable ([A-Za-z_][A-Za-z0-9_]*)",
    ]


def test_x_keys_are_extensions_and_ignored(load_text: LoadText) -> None:
    bp = load_text("x-common: {a: 1}\nservices: {a: {image: x, x-note: hi}}")
    assert list(bp.services) == ["a"]


def test_normalize_reports_problems_beside_a_best_effort_model(tmp_path: Path) -> None:
    marks = Marks("bp.yaml")
    model, found = normalize({"services": {"a": {"image": "x", "replicas": 0}}}, marks, tmp_path / "bp.yaml", tmp_path)
    assert [p.message for p in found] == ["expected a replica count (1..64), got 0"]
    assert model.services["a"].replicas == 1  # kept only so that cross-references can still be checked
    model, found = normalize({"services": {"a": {"image": "x"}}}, marks, tmp_path / "bp.yaml", tmp_path)
    assert found == []
    assert model is not None and model.name == "bp"  # named after the file


def test_ulimits_in_composes_form(load_text: LoadText) -> None:
    bp = load_text("services: {es: {image: e, ulimits: {nofile: {soft: 1024, hard: '2048'}, memlock: -1, nproc: 64}}}")
    assert bp.services["es"].ulimits == (("memlock", -1, -1), ("nofile", 1024, 2048), ("nproc", 64, 64))


@pytest.mark.parametrize(("ulimits", "message"), [
    ("{nofiles: 10}", "services.es.ulimits.nofiles: unknown ulimit 'nofiles' (did you mean 'nofile'?)"),
    ("{nofile: {soft: 10}}", "services.es.ulimits.nofile: expected both soft and hard, or one number for both"),
    ("{nofile: {soft: 20, hard: 10}}", "services.es.ulimits.nofile: the soft limit (20) is above the hard one (10)"),
    ("{nofile: lots}", "services.es.ulimits.nofile: expected a limit (a whole number, -1: unlimited), got 'lots'"),
    ("{nofile: {soft: 1, hard: 2, max: 3}}", "services.es.ulimits.nofile.max: unknown key 'max'"),
    ("[nofile]", "services.es.ulimits: expected ulimits (name -> a number, or {soft, hard}), got a list"),
])
def test_bad_ulimits_are_named(load_text: LoadText, ulimits: str, message: str) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text(f"services: {{es: {{image: e, ulimits: {ulimits}}}}}")
    assert any(message in p.message or message in str(p) for p in err.value.problems), err.value.problems
