"""`envkit run`'s control endpoint on the real engine: a command that is not envkit resets a service over
HTTP (ENVKIT_CONTROL_URL) and sees its seeded state again; the address is a secret and goes with the run."""

from __future__ import annotations

import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import labels as L
from envkit import snapshots as S
from envkit.backends import Backend

from .conftest import envkit_cli, resources_of
from .test_snapshots import STORE

BLUEPRINT = """\
name: controltest
services:
  store:
    build: ./store
    snapshot: true
    environment: {TOKEN: "${TOKEN}"}
    ready: {exec: [test, -f, /data/init]}
"""

# The command envkit runs: it dirties the store through the engine's CLI (any test runner could), resets
# it over HTTP, and checks what it sees; it prints the URL's token to a file so the test can look for it.
COMMAND = textwrap.dedent("""\
    import json, os, subprocess, sys, urllib.error, urllib.request

    url, run = os.environ["ENVKIT_CONTROL_URL"], os.environ["ENVKIT_RUN"]
    open(sys.argv[1], "w").write(url)
    store = f"envkit-{run}-store-1"
    def sh(script):
        return subprocess.run(["docker", "exec", store, "sh", "-c", script], capture_output=True, text=True,
                              check=True).stdout.strip()
    def post(path):
        try:
            with urllib.request.urlopen(urllib.request.Request(url + path, method="POST"), timeout=120) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.load(exc)

    seeded = sh("cat /data/init")
    sh("echo dirty > /data/init")
    code, body = post("/reset?service=store")
    assert code == 200 and set(body["reset"]) == {"store"}, (code, body)
    assert sh("cat /data/init") == seeded
    sh("echo dirty > /data/init")
    assert post("/reset")[0] == 200  # every service with a snapshot
    assert sh("cat /data/init") == seeded
    code, body = post("/reset?service=nope")
    assert code == 400 and "nope" in body["error"], (code, body)
    assert post("/heal")[0] == 200
    with urllib.request.urlopen(url + "/run", timeout=30) as answer:
        assert json.load(answer)["run"] == run
    print("control ok")
""")


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "Dockerfile").write_text(STORE, encoding="utf-8")
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    (tmp_path / "command.py").write_text(COMMAND, encoding="utf-8")
    return tmp_path


@pytest.fixture
def token(backend: Backend) -> Iterator[str]:
    """This test's own key; its snapshots (this blueprint's, made while it ran) are removed afterwards."""
    value = secrets.token_hex(6)
    def mine() -> set[str]:
        return {r.labels[L.SNAPSHOT] for r in backend.list_resources({L.SNAPSHOT: None, L.BLUEPRINT: "controltest"})}
    before = mine()
    yield value
    for key in mine() - before:
        S.remove(backend, key)


def test_a_command_resets_a_service_over_the_control_endpoint(backend: Backend, blueprint: Path, token: str,
                                                             tmp_path: Path) -> None:
    seen = tmp_path / "url"
    result = envkit_cli("run", str(blueprint), "--name", f"it-control-{token}", "--", sys.executable,
                        str(blueprint / "command.py"), str(seen), env={"TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert "control ok" in result.stdout
    url = seen.read_text()
    assert url.startswith("http://127.0.0.1:")
    assert url.rsplit("/", 1)[1] not in result.stdout + result.stderr  # a secret: never printed
    assert resources_of(backend, f"it-control-{token}") == []


def test_no_control_gives_the_command_no_address(backend: Backend, blueprint: Path, token: str) -> None:
    script = "import os, sys; sys.exit(3 if 'ENVKIT_CONTROL_URL' in os.environ else 0)"
    result = envkit_cli("run", str(blueprint), "--no-control", "--", sys.executable, "-c", script,
                        env={"TOKEN": token, "ENVKIT_CONTROL_URL": "http://127.0.0.1:9/outer"})
    assert result.returncode == 0, result.stderr
