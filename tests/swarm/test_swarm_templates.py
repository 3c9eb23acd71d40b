"""Swarm expands Go templates (``{{.Node.Hostname}}``) in a task's environment and hostname: a secret value
holding ``{{`` reaches the task as written, on the real swarm of three engines (tests/swarm/rig), both when
envkit brings the blueprint up and when ``docker stack deploy`` deploys ``envkit export --format stack``
with the secrets file the export wrote."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect

from .conftest import NAME

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a{{.Node.Hostname}}b {{ $x"
BLUEPRINT = f"""\
name: {NAME}
secrets: [TOKEN]
services:
  x:
    image: debian:bookworm-slim
    command: [sleep, infinity]
    stop_signal: SIGKILL
    environment: {{T: "${{TOKEN}}"}}
"""


def test_envkit_up_gives_the_task_the_secret_as_written(backend: Backend, tmp_path: Path) -> None:
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    env = api.up(tmp_path, env={"TOKEN": TOKEN}, backend=backend)
    try:
        assert env.exec("x", ["printenv", "T"]).output == TOKEN + "\n"
    finally:
        env.down()
    assert backend.list_resources({L.RUN: env.run_id}) == []


def test_stack_deploy_of_the_export_gives_the_task_the_secret_as_written(
        backend: Backend, swarm: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    stack_file = tmp_path / "x.stack.yaml"
    cli = [sys.executable, "-c", "from envkit.cli import main; main()"]
    subprocess.run([*cli, "export", "--format", "stack", str(tmp_path), "-o", str(stack_file)], check=True,
                   capture_output=True, env={**os.environ, "TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}, timeout=60)
    stack = f"envkit-test-tpl-{os.getpid()}"
    manager = ["docker", "-H", swarm["DOCKER_HOST"]]
    deploy = (f"set -a; . {shlex.quote(str(tmp_path / 'x.stack.secrets.env'))}; set +a; "
              f"{shlex.join(manager)} stack deploy --resolve-image never -c {shlex.quote(str(stack_file))} {stack}")
    subprocess.run(["bash", "-c", deploy], check=True, capture_output=True, timeout=120,
                   env={k: v for k, v in os.environ.items() if k != "TOKEN"})
    try:
        api_ = backend.api  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while True:
            tasks = api_.tasks(filters={"service": f"{stack}_x", "desired-state": "running"})
            cid = ((tasks[0]["Status"].get("ContainerStatus") or {}).get("ContainerID") if tasks else None)
            if cid and tasks[0]["Status"]["State"] == "running":
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(0.2)
        hosts = {n["ID"]: n["Description"]["Hostname"] for n in api_.nodes()}
        where = dict(p.split("=", 1) for p in swarm["ENVKIT_SWARM_NODES"].split(","))[hosts[tasks[0]["NodeID"]]]
        node = connect("docker", {"DOCKER_HOST": where})
        try:
            assert node.exec(cid, ("printenv", "T")).output == TOKEN + "\n"
        finally:
            node.close()
    finally:
        subprocess.run([*manager, "stack", "rm", stack], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        while backend.api.services(filters={"label": f"com.docker.stack.namespace={stack}"}) or \
                backend.api.networks(filters={"label": f"com.docker.stack.namespace={stack}"}):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, f"stack {stack} still there"
            time.sleep(0.2)
