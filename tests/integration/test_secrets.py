"""Secret values on the real engine: never in a label, the plan, the events or the terminal; the outputs
still carry them, also for another process that only has the labels (read back from the container)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from envkit import labels as L
from envkit.backends import Backend

from .conftest import ROOT, TEST_BLUEPRINTS, envkit_cli, resources_of

PASSWORD = "s3cr/et@x"
TOKEN = "tok-9f8e7d6c"
BLUEPRINT = str(TEST_BLUEPRINTS / "secrets")


def _inspect_all(run: str) -> str:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.envkit.run={run}"], capture_output=True,
                         text=True, check=True).stdout.split()
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label=io.envkit.run={run}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert ids and nets
    containers = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                           check=True).stdout)
    networks = subprocess.run(["docker", "network", "inspect", *nets], capture_output=True, text=True,
                              check=True).stdout
    return json.dumps([c["Config"]["Labels"] for c in containers]) + networks


def test_a_secret_never_reaches_labels_or_output_and_still_reaches_the_outputs(backend: Backend,
                                                                              tmp_path: Path) -> None:
    run = "it-secrets"
    env_file = tmp_path / "outputs.env"
    plan = envkit_cli("plan", "--offline", BLUEPRINT, env={"DB_PASSWORD": PASSWORD}, check=True)
    assert PASSWORD not in plan.stdout + plan.stderr
    assert "${secret:DB_PASSWORD}" in plan.stdout  # the probe line says which secret it holds
    up = envkit_cli("up", BLUEPRINT, "--name", run, "-v", "--write-env", str(env_file),
                    env={"DB_PASSWORD": PASSWORD}, check=True)
    try:
        assert PASSWORD not in up.stdout + up.stderr and TOKEN not in up.stdout + up.stderr
        assert "DATABASE_URL  postgresql://app:****@" in up.stdout
        assert "TOKEN         ****" in up.stdout and f"PLAIN         run {run}" in up.stdout
        assert "DSN           host=127.0.0.1 user=app password=****" in up.stdout
        labels = _inspect_all(run)
        assert PASSWORD not in labels and TOKEN not in labels
        assert "${secret:DB_PASSWORD}" in labels
        # Written for the caller: the real values, readable by the owner only.
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        written = env_file.read_text(encoding="utf-8")
        assert f"password={PASSWORD}" in written and f"TOKEN={TOKEN}" in written
        # Another process, without DB_PASSWORD: the values are read back from the container that holds them.
        others = {k: v for k, v in os.environ.items() if k != "DB_PASSWORD"}
        out = subprocess.run([*_exe(), "outputs", run], capture_output=True,
                             text=True, env=others, check=True, timeout=60).stdout
        assert f"DATABASE_URL=postgresql://app:{PASSWORD}@127.0.0.1:5432/app" in out.replace('"', "")
        assert f"TOKEN={TOKEN}" in out
        # The probe, restored from its label with the secret read back, still passes.
        status = subprocess.run([*_exe(), "status", run, "--json"], capture_output=True, text=True, env=others,
                                check=True, timeout=60).stdout
        assert json.loads(status)[0]["ready"] == "ready"
    finally:
        envkit_cli("down", run, check=True)
    assert resources_of(backend, run) == []


def test_a_failure_does_not_show_the_secret(backend: Backend, tmp_path: Path) -> None:
    run = "it-secrets-fail"
    # The probe compares with another value: it fails, and its error quotes the command (and so the password).
    folder = tmp_path / "secrets"
    shutil.copytree(BLUEPRINT, folder)
    text = (folder / "blueprint.yaml").read_text(encoding="utf-8")
    (folder / "blueprint.yaml").write_text(text.replace('= "${DB_PASSWORD}"', '= "x${DB_PASSWORD}"')
                                           .replace("timeout: 20s", "timeout: 2s"), encoding="utf-8")
    failed = envkit_cli("up", str(folder), "--name", run, "-v", env={"DB_PASSWORD": PASSWORD})
    assert failed.returncode == 6, failed.stderr
    assert "service db" in failed.stderr and "****" in failed.stderr
    assert PASSWORD not in failed.stdout + failed.stderr
    assert resources_of(backend, run) == []


# The test blueprint, but the service logs its password, and its probe, once broken, answers with it.
LATER = """
name: secrets
secrets: [DB_PASSWORD]
services:
  db:
    build: ./box
    command: [sh, -c, 'echo "db: starting with password $$POSTGRES_PASSWORD"; exec sleep infinity']
    environment:
      POSTGRES_PASSWORD: "${DB_PASSWORD:?set DB_PASSWORD}"
      API_TOKEN: {value: tok-9f8e7d6c, secret: true}
    ready:
      exec: [sh, -c, 'test ! -e /tmp/broken || { echo "cannot log in with ${DB_PASSWORD}"; exit 1; }']
outputs:
  DATABASE_URL: postgresql://app:${DB_PASSWORD}@${services.db.host}:5432/app
"""


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """A command whose stdout and stderr are a terminal (a pty), as a person runs it; its exit code and output."""
    main, side = pty.openpty()
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=side, stderr=side, env=env, cwd=ROOT, timeout=60)
        os.close(side)
        data = b""
        while select.select([main], [], [], 0.5)[0]:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the other side is closed and everything was read
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(main)
    return proc.returncode, data.decode(errors="replace")


def test_later_commands_of_another_process_show_no_secret(backend: Backend, tmp_path: Path) -> None:
    run = "it-secrets-later"
    folder = tmp_path / "secrets"
    shutil.copytree(BLUEPRINT, folder)
    (folder / "blueprint.yaml").write_text(LATER, encoding="utf-8")
    exported = envkit_cli("export", str(folder), env={"DB_PASSWORD": PASSWORD}, check=True)
    assert PASSWORD not in exported.stdout + exported.stderr and "POSTGRES_PASSWORD: ${DB_PASSWORD}" in exported.stdout
    envkit_cli("up", str(folder), "--name", run, env={"DB_PASSWORD": PASSWORD}, check=True)
    try:
        others = {k: v for k, v in os.environ.items() if k != "DB_PASSWORD"}
        later = {"env": others, "capture_output": True, "text": True, "timeout": 60, "cwd": ROOT}
        db = backend.list_containers({L.RUN: run, L.SERVICE: "db"})[0].id
        subprocess.run(["docker", "exec", db, "touch", "/tmp/broken"], check=True)
        status = subprocess.run([*_exe(), "status", run], **later)  # type: ignore[call-overload]
        assert status.returncode == 6 and "cannot log in with ****" in status.stdout + status.stderr
        logs = subprocess.run([*_exe(), "logs", run], **later)  # type: ignore[call-overload]
        assert "db: starting with password ****" in logs.stdout
        # The engine cannot start a command (a password quoted into its name): shown on a terminal, masked.
        code, shown = _on_a_terminal([*_exe(), "exec", run, "db", "--", f"psql postgresql://app:{PASSWORD}@db/app"],
                                     others)
        assert code == 126 and "OCI runtime exec failed" in shown and "postgresql://app:****@db/app" in shown
        bundle = tmp_path / "bundle"
        subprocess.run([*_exe(), "collect", run, str(bundle)], check=True, **later)  # type: ignore[call-overload]
        files = [p for p in bundle.rglob("*") if p.is_file()]
        assert len(files) > 4 and not [p for p in files if PASSWORD in p.read_text(encoding="utf-8")]
        assert "cannot log in with ****" in (bundle / "probes.txt").read_text(encoding="utf-8")
        for result in (status, logs):
            assert PASSWORD not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr
        assert PASSWORD not in shown
    finally:
        envkit_cli("down", run, check=True)
    assert resources_of(backend, run) == []


def _exe() -> list[str]:
    return [str(Path(sys.executable).with_name("envkit"))]
