"""``envkit export --format compose``: the blueprint model mapped to a compose document (no engine)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from envkit.blueprint import Blueprint, Probe, load
from envkit.cli import cli
from envkit.export import HEALTHCHECK_TIMING, _healthcheck_test, image_tags, to_compose
from envkit.images import image_tag

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "blueprints" / "shop"


def fake_tags(bp: Blueprint) -> dict[str, str]:
    return {n: f"envkit/{bp.name}-{n}:0123456789abcdef" for n, s in bp.services.items() if s.build}


@pytest.fixture(scope="module")
def shop() -> Blueprint:
    return load(SHOP, {})


@pytest.fixture(scope="module")
def shop_doc(shop: Blueprint) -> dict[str, Any]:
    return to_compose(shop, fake_tags(shop)).document


def write(tmp_path: Path, text: str) -> Blueprint:
    folder = tmp_path / "bp"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    (folder / "data").mkdir()
    (folder / "blueprint.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load(folder, {})


def test_shop_has_the_same_services_networks_and_images(shop: Blueprint, shop_doc: dict[str, Any]) -> None:
    assert list(shop_doc["services"]) == list(shop.services)
    assert shop_doc["networks"] == {"edge": {}, "backend": {}}
    assert "volumes" not in shop_doc
    for name, svc in shop_doc["services"].items():
        assert svc["image"] == f"envkit/shop-{name}:0123456789abcdef"
        assert svc["pull_policy"] == "never"
        assert "build" not in svc
        assert "stop_grace_period" not in svc  # Compose's own default, as users run it
    api = shop_doc["services"]["api"]
    assert api["networks"] == ["edge", "backend"]
    assert api["command"] == ["python3", "-m", "shop.api"]
    assert api["environment"]["DATABASE_URL"] == "postgresql://shop:shop@db:5432/shop"
    assert api["ports"] == ["127.0.0.1::8080"]
    assert shop_doc["services"]["db"]["environment"] == {"POSTGRES_PASSWORD": "shop"}


def test_shop_image_tags_are_envkits_content_tags(shop: Blueprint) -> None:
    tags = image_tags(shop)
    assert set(tags) == {n for n, s in shop.services.items() if s.build}
    for name, tag in tags.items():
        build = shop.services[name].build
        assert build is not None
        assert tag == image_tag("shop", build)
    assert to_compose(shop, tags).document["services"]["api"]["image"] == tags["api"]


def test_shop_dependency_conditions(shop_doc: dict[str, Any]) -> None:
    services = shop_doc["services"]
    assert services["api"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "cache": {"condition": "service_healthy"},
        "payments": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},  # a job: "ready" means it completed
    }
    assert services["worker"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "cache": {"condition": "service_healthy"},
    }
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert "healthcheck" not in services["migrate"]
    assert "healthcheck" not in services["worker"]


def test_shop_probes_become_one_second_healthchecks(shop_doc: dict[str, Any]) -> None:
    services = shop_doc["services"]
    for name in ("db", "cache", "payments", "api"):
        check = services[name]["healthcheck"]
        assert {k: check[k] for k in HEALTHCHECK_TIMING} == {"interval": "1s", "timeout": "1s", "retries": 60,
                                                              "start_period": "0s"}
    assert services["db"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "shop"]
    assert services["cache"]["healthcheck"]["test"] == ["CMD", "redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"]
    test = services["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    assert "8080" in test[3] and "'/health'" in test[3] and "r.status == 200" in test[3]


def test_everything_else_maps_and_what_cannot_is_noted(tmp_path: Path) -> None:
    bp = write(tmp_path, """
        name: misc
        networks:
          front: {}
          inner: {internal: true, labels: {team: qa}}
        volumes:
          state: {}
        services:
          web:
            build: ./img
            replicas: 3
            ports: [8080, 5353/udp]
            environment: {PRICE: "5$", PATH_LIKE: "a:b"}
            entrypoint: [/bin/sh, -c]
            command: ["echo $HOME"]
            networks: {front: {aliases: [www]}, inner: {}}
            volumes: ["state:/state", "./data:/data:ro"]
            tmpfs: ["/run:size=1m", /tmp]
            memory: 64m
            cpus: 0.5
            stop_grace_period: 3s
            ready: {log: "listening on"}
          side:
            image: busybox:1.36
            networks: [inner]
            depends_on: {web: {condition: ready}, once: {condition: completed}, slow: started}
          slow:
            image: busybox:1.36
            networks: [inner]
            ports: ["127.0.0.1:18081:8081"]
            ready: {tcp: 7000}
          once:
            image: busybox:1.36
            kind: job
            networks: [inner]
            ready: {http: {port: 9000, path: /x, status: 204, body: "ok"}}
        """)
    result = to_compose(bp, fake_tags(bp))
    services = result.document["services"]
    web = services["web"]
    assert web["deploy"] == {"replicas": 3}
    assert web["ports"] == ["127.0.0.1::8080", "127.0.0.1::5353/udp"]
    assert web["environment"] == {"PATH_LIKE": "a:b", "PRICE": "5$$"}  # compose would interpolate a bare $
    assert web["entrypoint"] == ["/bin/sh", "-c"]
    assert web["command"] == ["echo $$HOME"]
    assert web["networks"] == {"front": {"aliases": ["www"]}, "inner": None}
    assert web["volumes"] == [{"type": "volume", "source": "state", "target": "/state"},
                              {"type": "bind", "source": str(tmp_path / "bp" / "data"), "target": "/data",
                               "read_only": True}]
    assert web["tmpfs"] == ["/run:size=1m", "/tmp"]
    assert web["mem_limit"] == 64 * 1024**2 and web["cpus"] == 0.5
    assert web["stop_grace_period"] == "3s"
    assert "healthcheck" not in web  # a log probe has no Compose equivalent ...
    assert any("services.web" in n and "log-line" in n for n in result.notes)  # ... and says so
    side = services["side"]
    assert side["image"] == "busybox:1.36" and "pull_policy" not in side
    assert side["depends_on"] == {"web": {"condition": "service_started"},  # no healthcheck to wait for
                                  "once": {"condition": "service_completed_successfully"},
                                  "slow": {"condition": "service_started"}}
    assert services["slow"]["healthcheck"]["test"][:3] == ["CMD", "python3", "-c"]
    assert services["slow"]["ports"] == ["127.0.0.1:18081:8081"]  # a pinned host port stays pinned
    assert "healthcheck" not in services["once"]  # jobs are waited for by exit code
    assert result.document["networks"] == {"front": {}, "inner": {"internal": True, "labels": {"team": "qa"}}}
    assert result.document["volumes"] == {"state": {}}


def test_text_is_yaml_of_the_document_with_notes_as_comments(shop: Blueprint) -> None:
    result = to_compose(shop, fake_tags(shop))
    text = result.text("blueprints/shop/blueprint.yaml")
    assert yaml.safe_load(text) == result.document
    assert text.startswith("# Generated by `envkit export --format compose` from blueprints/shop/blueprint.yaml.")
    assert all(f"# note: {n}" in text for n in result.notes)
    assert "test: [CMD, pg_isready, -h, 127.0.0.1, -U, shop]" in text


def test_a_build_service_without_a_tag_is_a_bug(shop: Blueprint) -> None:
    with pytest.raises(KeyError, match="api"):
        to_compose(shop, {k: v for k, v in fake_tags(shop).items() if k != "api"})


# -- the healthcheck programs really work (against 127.0.0.1, as inside a container) -------------------
@pytest.fixture
def http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/health" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"all ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def run_check(test: list[str]) -> int:
    assert test[0] == "CMD" and test[1] == "python3"
    program = test[3].replace("$$", "$")
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30).returncode


def test_http_healthcheck_program(http_server: int) -> None:
    def check(**kw: Any) -> int:
        test = _healthcheck_test(Probe(kind="http", port=http_server, **kw))
        assert test is not None
        return run_check(test)

    assert check(path="/health") == 0
    assert check(path="/health", status=200, body="ok$") == 0
    assert check(path="/health", status=204) == 1
    assert check(path="/health", body="nope") == 1
    assert check(path="/missing") == 1


def test_tcp_healthcheck_program() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        test = _healthcheck_test(Probe(kind="tcp", port=port))
        assert test is not None
        assert run_check(test) == 0
    assert run_check(test) == 1  # closed now


def test_cli_writes_the_file_and_compose_accepts_it(tmp_path: Path, compose_binary: Path) -> None:
    out = tmp_path / "shop.compose.yaml"
    result = CliRunner().invoke(cli, ["export", "--format", "compose", str(SHOP), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["services"]["api"]["image"].startswith("envkit/shop-app:")
    # `config` only parses and validates: no engine involved.
    check = subprocess.run([str(compose_binary), "-f", str(out), "config", "--quiet"], capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent"})
    assert check.returncode == 0, check.stderr


def test_cli_writes_to_stdout_by_default() -> None:
    result = CliRunner().invoke(cli, ["export", str(SHOP)])
    assert result.exit_code == 0, result.output
    assert "services:" in result.output and "pull_policy: never" in result.output
