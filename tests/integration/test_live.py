"""Working on a live run against the real engine: restart keeps the containers and dependants keep
working, a rebuild after a code change answers with the new image on the same host port, logs are
interleaved by time, and `images prune` removes only envkit's unused images."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import ContainerSpec, NetworkAttachment, NetworkSpec
from envkit.blueprint import load
from envkit.images import image_tag
from envkit.plan import build_spec
from envkit.runs import teardown

from .conftest import BLUEPRINTS, ROOT, envkit_cli, resources_of

HELLO = BLUEPRINTS / "hello" / "web"
# The client reaches web by its DNS name from inside the run (python3-minimal: a plain socket).
FETCH = ("import socket,sys\ns=socket.create_connection(('web',8000),3)\n"
         "s.sendall(b'GET / HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n')\nd=b''\nwhile True:\n c=s.recv(4096)\n"
         " if not c: break\n d+=c\nsys.stdout.write(d.decode().split('\\r\\n\\r\\n',1)[1])\n")


def get(port: int, path: str = "/") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().split("\r\n\r\n", 1)[1]


@pytest.fixture
def live_blueprint(tmp_path: Path) -> Path:
    """web is built from a copy of hello's context (edited by the rebuild test); client from hello's own."""
    shutil.copytree(HELLO, tmp_path / "web")
    (tmp_path / "blueprint.yaml").write_text(f"""
name: it-live
services:
  web:
    build: ./web
    ports: [8000]
    ready: {{http: {{port: 8000, path: /health}}}}
  client:
    build: {HELLO}
    allow: [host-paths]
    command: [sleep, infinity]
    depends_on: [web]
""", encoding="utf-8")
    return tmp_path


@pytest.fixture
def env(backend: Backend, live_blueprint: Path, request: pytest.FixtureRequest) -> Iterator[api.Environment]:
    name = f"it-live-{request.node.name[5:20].replace('_', '-')}"
    environment = api.up(live_blueprint, name=name, backend=backend)
    try:
        yield environment
    finally:
        environment.down()
        assert resources_of(backend, name) == []
        # The edited context's image is this test's own: remove it (hello's stays, other blueprints use it).
        for tag in {image_tag("it-live", load(live_blueprint).services["web"].build)} - {  # type: ignore[arg-type]
                image_tag("it-live", load(live_blueprint).services["client"].build)}:  # type: ignore[arg-type]
            backend.remove_image(tag)


def client_fetch(env: api.Environment) -> str:
    result = env.exec("client", ["python3", "-c", FETCH])
    assert result.exit_code == 0, result.output
    return result.output


def test_restart_keeps_the_containers_and_dependants_keep_working(env: api.Environment) -> None:
    before = {c.name: c.id for c in env.refresh().containers}
    port = env.port("web", 8000)
    env.exec("web", ["sh", "-c", "echo kept > /tmp/state"])
    started = time.monotonic()
    result = env.restart("web", timeout=0)
    restart_seconds = time.monotonic() - started
    assert {c.name: c.id for c in env.info.containers} == before  # same containers: nothing re-created
    assert env.exec("web", ["cat", "/tmp/state"]).output == "kept\n"  # what it wrote is still there
    assert '"hello": "world"' in client_fetch(env)  # the dependant reaches it again by its DNS name
    assert env.info.replicas("client")[0].running
    # The host port envkit chose at create stays (Docker alone would give a new one at each start).
    assert not result.moved and env.port("web", 8000) == port and get(port, "/health") == "ok"
    # A rebuild (here of an unchanged context: a re-creation) keeps the port too; restarts then keep it.
    env.rebuild("web", timeout=0)
    assert env.port("web", 8000) == port
    assert not env.restart("web", timeout=0).moved and env.port("web", 8000) == port
    assert get(port, "/health") == "ok"
    print(f"restart of one service: {restart_seconds:.2f}s")


def test_stop_then_start_from_the_cli(env: api.Environment) -> None:
    stopped = envkit_cli("stop", env.run_id, "-t", "0", check=True)
    assert "exited" in stopped.stdout
    assert [c.status for c in env.refresh().containers] == ["exited", "exited"]  # client first, then web
    started = envkit_cli("start", env.run_id, check=True)
    assert "web ready" in started.stderr
    assert all(c.running for c in env.refresh().containers)
    assert '"hello": "world"' in client_fetch(env)


def test_rebuild_after_a_code_change_answers_with_the_new_image_on_the_same_port(
        env: api.Environment, live_blueprint: Path) -> None:
    port = env.port("web", 8000)
    client = env.info.replicas("client")[0].id
    server = live_blueprint / "web" / "server.py"
    server.write_text(server.read_text().replace('{"hello": "world", ', '{"hello": "rebuilt", '))
    dry = envkit_cli("rebuild", env.run_id, "--dry-run", check=True)
    assert "(services: web)" in dry.stdout and "image:envkit/it-live-web:" in dry.stdout
    result = envkit_cli("rebuild", env.run_id, "-t", "0", check=True)
    assert "building envkit/it-live-web:" in result.stderr and "web ready" in result.stderr
    assert f"127.0.0.1:{port}->8000/tcp" in result.stdout
    assert env.port("web", 8000) == port
    assert '"hello": "rebuilt"' in get(port)  # the new image answers, on the same host port
    assert env.info.replicas("client")[0].id == client  # the dependant was not touched ...
    assert '"hello": "rebuilt"' in client_fetch(env)  # ... and reaches the new one by the same name
    state = env.info.replicas("web")[0]
    assert state.labels[L.RUN] == env.run_id and state.labels[L.SERVICE] == "web"


def test_logs_are_interleaved_by_time_with_since_and_tail(backend: Backend, tmp_path: Path) -> None:
    # a and b take turns through files in a shared volume, so the order they print in is known ($$: a
    # dollar for the shell, not a variable of the blueprint).
    def talker(name: str, other: str, first: str) -> str:
        turn = f"while [ ! -e /x/{name}$$i ]; do sleep 0.05; done; echo {name}$$i; touch /x/{other}$$((i+{first}))"
        return (f"  {name}:\n    build: {HELLO}\n    allow: [host-paths]\n    user: root\n    volumes: ['x:/x']\n"
                f"    command: [sh, -c, 'touch /x/a1; for i in 1 2 3; do {turn}; done; exec sleep infinity']\n")
    (tmp_path / "blueprint.yaml").write_text("name: it-logs\nvolumes: {x: {}}\nservices:\n"
                                             + talker("a", "b", "0") + talker("b", "a", "1"))
    run = "it-logs-interleaved"
    with api.up(tmp_path, name=run, backend=backend) as env:
        deadline = time.monotonic() + 20
        while env.logs().count("\n") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        out = envkit_cli("logs", run, check=True).stdout
        assert out == "a | a1\nb | b1\na | a2\nb | b2\na | a3\nb | b3\n"
        assert envkit_cli("logs", run, "--tail", "1", check=True).stdout == "a | a3\nb | b3\n"
        stamped = envkit_cli("logs", run, "b", "-t", check=True).stdout.splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["b1", "b2", "b3"]
        second = stamped[1].split(" ", 1)[0]  # b2's time: since it, b2 (inclusive), a3 and b3
        since = envkit_cli("logs", run, "--since", second, check=True).stdout
        assert since == "b | b2\na | a3\nb | b3\n"
        assert envkit_cli("logs", run, "--since", "1h", check=True).stdout == out
        exe = Path(sys.executable).with_name("envkit")
        with subprocess.Popen([str(exe), "logs", run, "-f", "--tail", "1"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) as follow:
            try:
                assert follow.stdout is not None
                assert [follow.stdout.readline() for _ in range(2)] == ["a | a3\n", "b | b3\n"]
                env.exec("a", ["sh", "-c", "echo late > /proc/1/fd/1"])
                assert follow.stdout.readline() == "a | late\n"
            finally:
                follow.kill()
    assert resources_of(backend, run) == []


def test_images_prune_removes_only_envkits_unused_images(backend: Backend, tmp_path: Path) -> None:
    context = tmp_path / "box"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY version /version\n")
    (tmp_path / "blueprint.yaml").write_text("name: it-prune\nservices:\n  box: {build: ./box}\n")
    tags = []
    for n in range(3):
        (context / "version").write_text(f"{n}\n")
        bp = load(tmp_path)
        build = bp.services["box"].build
        assert build is not None
        tags.append(image_tag("it-prune", build))
        backend.build_image(build_spec(build, tags[-1]), lambda line: None)
        time.sleep(1.1)  # image creation times are in seconds: the last is the newest
    run = "it-prune-user"
    labels = ((L.MANAGED, "true"), (L.RUN, run))
    backend.create_network(NetworkSpec(f"envkit-{run}-net", labels))
    # A stopped container of the oldest image: it is in use.
    backend.create_container(ContainerSpec(f"envkit-{run}-box", tags[0], labels,
                                           (NetworkAttachment(f"envkit-{run}-net"),), command=("true",)))
    # Images outside the blueprint's own repository that must stay (others' may come and go meanwhile:
    # the engine is shared).
    hello = load(BLUEPRINTS / "hello").services["web"].build
    assert hello is not None
    kept = {t for t in ("debian:bookworm-slim", image_tag("hello", hello)) if backend.image_exists(t)}
    try:
        dry = envkit_cli("images", "prune", str(tmp_path), "--dry-run", check=True)
        assert dry.stdout.splitlines()[0] == f"would remove {tags[1]}" and "kept 2 (1 in use)" in dry.stdout
        assert all(backend.image_exists(t) for t in tags)  # a dry run changes nothing
        listed = envkit_cli("images", "ls", str(tmp_path), check=True).stdout
        assert all(t in listed for t in tags)
        envkit_cli("images", "prune", str(tmp_path), check=True)
        assert [backend.image_exists(t) for t in tags] == [True, False, True]  # older unused tag gone
        envkit_cli("images", "prune", str(tmp_path), "--all", check=True)
        assert [backend.image_exists(t) for t in tags] == [True, False, False]  # the one in use stays
    finally:
        teardown(backend, [run], missing_ok=True)
        for tag in tags:
            backend.remove_image(tag)
    assert all(backend.image_exists(t) for t in kept)  # nobody else's image was touched
