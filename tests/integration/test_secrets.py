"""Secret values on the real engine: never in a label, the plan, the events or the terminal; the outputs
still carry them, also for another process that only has the labels (read back from the container)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from envkit.backends import Backend

from .conftest import TEST_BLUEPRINTS, envkit_cli, resources_of

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
    up = envkit_cli("up", BLUEPRINT, "--name", run, "-v", "--env-file", str(env_file),
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


def _exe() -> list[str]:
    return [str(Path(sys.executable).with_name("envkit"))]
