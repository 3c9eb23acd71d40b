"""Cross-reference checks on the typed model, each problem placed at the reference that is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from envkit.blueprint import Blueprint, NetworkDef, Port, Service
from envkit.blueprint.model import Attachment, Dependency
from envkit.blueprint.source import Marks
from envkit.blueprint.validate import check
from envkit.errors import BlueprintError

LoadText = Callable[..., Blueprint]


def problems(load_text: LoadText, text: str) -> list[str]:
    with pytest.raises(BlueprintError) as caught:
        load_text(text)
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


def model(*services: Service, outputs: tuple[tuple[str, str], ...] = ()) -> Blueprint:
    return Blueprint(name="t", file=Path("t.yaml"), directory=Path("."), services={s.name: s for s in services},
                     networks={"default": NetworkDef("default")}, outputs=outputs)


def svc(name: str, **kw: object) -> Service:
    return Service(name=name, image="x", build=None, networks=(Attachment("default"),), **kw)  # type: ignore[arg-type]


def test_a_valid_model_has_no_problems() -> None:
    bp = model(svc("db", ports=(Port(5432),)), svc("api", depends_on=(Dependency("db"),)),
               outputs=(("URL", "${services.db.host}:${services.db.ports.5432} ${run.id}"),))
    assert check(bp, Marks("t.yaml")) == []


def test_check_works_on_a_model_without_marks() -> None:
    (problem,) = check(model(svc("api", depends_on=(Dependency("dbb"),)), svc("db")), Marks("t.yaml"))
    assert str(problem) == "t.yaml services.api.depends_on.dbb: unknown service 'dbb' (did you mean 'db'?)"


def test_unknown_dependency_with_and_without_a_close_match(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          db: {image: x}
          cache: {image: x}
          api: {image: x, depends_on: [dbb, queue]}
          web: {image: x, depends_on: {apii: {condition: started}}}
    """) == [
        "5:32 services.api.depends_on[0]: unknown service 'dbb' (did you mean 'db'?)",
        "5:37 services.api.depends_on[1]: unknown service 'queue' (services: api, cache, db, web)",
        "6:32 services.web.depends_on.apii: unknown service 'apii' (did you mean 'api'?)",
    ]


def test_a_service_cannot_depend_on_itself(load_text: LoadText) -> None:
    assert problems(load_text, "services: {api: {image: x, depends_on: [api]}}") == [
        "1:41 services.api.depends_on[0]: service 'api' cannot depend on itself",
    ]


def test_a_cycle_is_shown_as_a_path(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          web: {image: x, depends_on: [api]}
          api: {image: x, depends_on: [worker]}
          worker: {image: x, depends_on: [queue]}
          queue: {image: x, depends_on: [api]}
    """) == [
        "4:19 services.api.depends_on: dependency cycle: api -> worker -> queue -> api",
    ]


def test_completed_needs_a_job(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          db: {image: x}
          api: {image: x, depends_on: {db: completed}}
    """) == [
        "4:32 services.api.depends_on.db: condition 'completed' needs a job, but 'db' is a long-running service "
        "(add 'kind: job' to it or use condition 'ready')",
    ]
    load_text("services: {seed: {image: x, kind: job}, api: {image: x, depends_on: {seed: completed}}}")


def test_undefined_networks_and_volumes(load_text: LoadText) -> None:
    assert problems(load_text, """
        networks: {backend: {}}
        volumes: {pgdata: {}}
        services:
          a: {image: x, networks: [backend, backnd]}
          b: {image: x, networks: {front: {}}, volumes: ['pgdat:/data', './:/src']}
    """) == [
        "5:37 services.a.networks[1]: undefined network 'backnd' (did you mean 'backend'?) "
        "(declare it under the top-level 'networks:')",
        "6:28 services.b.networks.front: undefined network 'front' (declare it under the top-level 'networks:')",
        "6:50 services.b.volumes[0]: undefined volume 'pgdat' (did you mean 'pgdata'?) "
        "(declare it under the top-level 'volumes:')",
    ]


def test_container_ports_listed_twice(load_text: LoadText) -> None:
    assert problems(load_text, "services: {a: {image: x, ports: [8080, '18080:8080', 8080/udp]}}") == [
        "1:40 services.a.ports[1]: container port 8080/tcp is listed twice",
    ]


def test_pinned_host_ports_and_replicas(load_text: LoadText) -> None:
    assert problems(load_text, "services: {a: {image: x, replicas: 2, ports: ['8080:80']}}") == [
        "1:47 services.a.ports[0]: host port 8080 is pinned but the service has 2 replicas; "
        "leave the host port out (ephemeral)",
    ]


def test_pinned_host_ports_clash_on_the_same_or_a_wildcard_address(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          a: {image: x, ports: ['8080:80']}
          b: {image: x, ports: ['8080:81']}
          c: {image: x, ports: ['0.0.0.0:8080:82'], allow: [public-ports]}
          d: {image: x, ports: ['127.0.0.2:8080:83', '8080:83/udp']}
    """) == [
        "4:25 services.b.ports[0]: host port 127.0.0.1:8080/tcp is already pinned by service 'a'; "
        "pin another port or leave it out (ephemeral)",
        "5:25 services.c.ports[0]: host port 0.0.0.0:8080/tcp is already pinned by service 'a'; "
        "pin another port or leave it out (ephemeral)",
    ]


def test_output_references(load_text: LoadText) -> None:
    assert problems(load_text, """
        services:
          db: {image: x, ports: [5432]}
        outputs:
          OK: ${services.db.host}:${services.db.ports.5432}/${run.id}/${services.db.name}
          UNPUBLISHED: ${services.db.ports.5433}
          UNKNOWN: ${services.dbb.host}
          RUN: ${run.owner}
          SHAPE: ${services.db.address}
          OTHER: ${env.HOME}
    """) == [
        "6:3 outputs.UNPUBLISHED: service 'db' publishes no port 5433 (its ports: 5432); add it to its 'ports:'",
        "7:3 outputs.UNKNOWN: unknown service 'dbb' in '${services.dbb.host}' (did you mean 'db'?)",
        "8:3 outputs.RUN: unknown reference '${run.owner}' (use ${run.id})",
        "9:3 outputs.SHAPE: unknown reference '${services.db.address}' (use ${services.db.host} or "
        "${services.db.ports.PORT})",
        "10:3 outputs.OTHER: unknown reference '${env.HOME}' (use ${services.NAME.host} or "
        "${services.NAME.ports.PORT})",
    ]


def test_cross_references_are_checked_only_once_the_model_is_whole(load_text: LoadText) -> None:
    # A service that failed to normalise is missing from the model: references to it would be noise.
    assert problems(load_text, "services: {db: {image: x, replicas: 0}, api: {image: x, depends_on: [db]}}") == [
        "1:27 services.db.replicas: expected a replica count (1..64), got 0",
    ]


def test_value_errors_and_reference_errors_are_listed_together(tmp_path: Path) -> None:
    from envkit.blueprint import load
    from envkit.errors import BlueprintError

    (tmp_path / "bp.yaml").write_text(
        "name: x\n"
        "services:\n"
        "  api:\n"
        "    image: a\n"
        "    replicas: 0\n"
        "    depends_on: [dbb, Bad]\n"
        "  db:\n"
        "    image: b\n"
        "  Bad:\n"
        "    image: c\n"
    )
    with pytest.raises(BlueprintError) as caught:
        load(tmp_path / "bp.yaml", env={})
    messages = [p.message for p in caught.value.problems]
    assert "expected a replica count (1..64), got 0" in messages
    assert "unknown service 'dbb' (did you mean 'db'?)" in messages
    # 'Bad' has its own error (its name); the reference to it is not reported a second time.
    assert sum("Bad" in m for m in messages) == 1
