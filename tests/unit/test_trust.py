"""Safe by default: host paths, the engine socket, privileged mode, capabilities and public ports are refused
unless the service's `allow:` lists them; what is allowed is a warning `envkit validate` prints."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit.blueprint import Blueprint, trust
from envkit.cli import main
from envkit.errors import BlueprintError

LoadText = Callable[..., Blueprint]


def _problems(load_text: LoadText, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(BlueprintError) as caught:
        load_text(text, env=env)
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


@pytest.mark.parametrize(("body", "allowance", "path"), [
    ("volumes: ['/usr:/host']", "host-paths", "services.a.volumes[0]"),
    ("volumes: ['/etc:/e:ro']", "host-paths", "services.a.volumes[0]"),
    ("volumes: ['~/:/home']", "host-paths", "services.a.volumes[0]"),
    ("volumes: [{type: bind, source: '..', target: /up}]", "host-paths", "services.a.volumes[0]"),
    ("privileged: true", "privileged", "services.a.privileged"),
    ("cap_add: [ALL]", "capabilities", "services.a.cap_add"),
    ("cap_add: [net_admin]", "capabilities", "services.a.cap_add"),
    ("ports: ['0.0.0.0::80']", "public-ports", "services.a.ports[0]"),
    ("ports: ['[::]:8080:80']", "public-ports", "services.a.ports[0]"),
    ("ports: [{container: 80, host_ip: 192.168.1.5}]", "public-ports", "services.a.ports[0]"),
])
def test_each_host_access_needs_its_allowance(load_text: LoadText, body: str, allowance: str, path: str) -> None:
    text = f"services:\n  a:\n    image: x\n    {body}\n"
    (problem,) = [p for p in _problems(load_text, text) if allowance in p]
    assert problem.startswith("4:") and f" {path}: " in problem
    assert problem.endswith(f"add 'allow: [{allowance}]' to service 'a' to permit it")
    bp = load_text(f"services:\n  a:\n    image: x\n    allow: [{allowance}]\n    {body}\n")
    (warning,) = [w for w in bp.warnings if allowance in w.message]
    assert warning.path == path and warning.line == 5 and f"allowed by 'allow: [{allowance}]'" in warning.message


def test_the_whole_file_system_needs_host_paths_and_docker_socket(load_text: LoadText) -> None:
    found = _problems(load_text, "services:\n  a: {image: x, volumes: ['/:/host']}\n")
    assert found[0].startswith("2:27 services.a.volumes[0]: bind mount of / (the host's whole file system) is outside")
    assert any("'allow: [docker-socket]'" in p for p in found) == bool(trust.engine_sockets({}))
    bp = load_text("services:\n  a: {image: x, volumes: ['/:/host'], allow: [host-paths, docker-socket]}\n")
    assert "whole file system" in bp.warnings[0].message


def test_what_stays_inside_is_not_asked_about(load_text: LoadText) -> None:
    bp = load_text("""
        services:
          a:
            build: ./app
            volumes: ["./conf:/conf", "data:/data"]
            ports: [8080, "127.0.0.1::81", "[::1]::82", "127.0.0.2::83"]
            cap_add: []
        volumes: {data: {}}
    """, {"app/Dockerfile": "FROM x\n", "conf/a": ""})
    assert bp.warnings == ()


def test_a_build_context_outside_the_folder_needs_host_paths(load_text: LoadText, tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "Dockerfile").write_text("FROM x\n")
    assert _problems(load_text, "services:\n  a: {build: ../shared}\n") == [
        f"2:7 services.a.build: build context {tmp_path}/shared is outside the blueprint's folder"
        f"; add 'allow: [host-paths]' to service 'a' to permit it"]
    assert _problems(load_text, "services:\n  a:\n    build: {context: ../shared}\n")[0].startswith(
        "3:13 services.a.build.context: build context")


def test_a_link_inside_the_folder_that_points_outside_counts_as_outside(load_text: LoadText,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "bp").mkdir()
    (tmp_path / "bp" / "etc").symlink_to("/etc")
    assert "host-paths" in _problems(load_text, "services:\n  a: {image: x, volumes: ['./etc:/e']}\n")[0]


def test_the_engine_socket_needs_docker_socket(load_text: LoadText, tmp_path: Path) -> None:
    sock = tmp_path / "engine" / "docker.sock"
    sock.parent.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        env = {"DOCKER_HOST": f"unix://{sock}"}
        found = _problems(load_text, f"services:\n  a: {{image: x, volumes: ['{sock}:/var/run/docker.sock']}}\n", env)
        assert found == [f"2:27 services.a.volumes[0]: bind mount of the container engine's socket {sock} (root on "
                         "the host for whoever reaches it); add 'allow: [docker-socket]' to service 'a' to permit it"]
        # The folder holding it gives the socket too: both allowances.
        found = _problems(load_text, f"services:\n  a: {{image: x, volumes: ['{sock.parent}:/run/x']}}\n", env)
        assert sorted(p.split("'allow: [")[1].split("]")[0] for p in found) == ["docker-socket", "host-paths"]
    finally:
        server.close()
    assert sock.resolve() in trust.engine_sockets({"DOCKER_HOST": f"unix://{sock}"})


def test_an_allowance_nothing_needs_is_a_warning_and_an_unknown_one_an_error(load_text: LoadText) -> None:
    bp = load_text("services:\n  a: {image: x, allow: [privileged]}\n")
    assert [w.message for w in bp.warnings] == ["'privileged' is allowed but nothing needs it"]
    assert _problems(load_text, "services:\n  a: {image: x, allow: [privilege, everything]}\n") == [
        "2:25 services.a.allow[0]: unknown allowance 'privilege' (did you mean 'privileged'?)",
        "2:36 services.a.allow[1]: unknown allowance 'everything'; use host-paths, docker-socket, privileged, "
        "capabilities, public-ports",
    ]


def test_validate_prints_the_warnings_and_succeeds(write_blueprint: Callable[..., Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_blueprint("services:\n  a: {image: x, privileged: true, allow: [privileged]}\n")
    assert main(["validate", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "ok — blueprint 'bp'" in out
    assert err.startswith(f"warning: {folder}/blueprint.yaml:2:17 services.a.privileged: privileged mode")
