"""Failures, teardown and the CLI lifecycle against the real engine."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from envkit import labels as L
from envkit.backends import Backend

from .conftest import ROOT, TEST_BLUEPRINTS, envkit_cli, resources_of


def test_a_service_that_never_gets_ready_is_named_with_its_logs_and_nothing_is_left(backend: Backend) -> None:
    result = envkit_cli("up", str(TEST_BLUEPRINTS / "never-ready"), "--name", "it-never-ready")
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: service sleepy: not ready after 3s (probe: tcp 9999" in result.stderr
    assert "service client" not in result.stderr  # the waiting service is not blamed
    assert "sleepy: still not listening on 9999" in result.stderr  # its last log lines are shown
    assert resources_of(backend, "it-never-ready") == []


def test_keep_on_failure_leaves_the_run_and_says_how_to_remove_it(backend: Backend) -> None:
    result = envkit_cli("up", str(TEST_BLUEPRINTS / "never-ready"), "--name", "it-kept", "--keep-on-failure")
    try:
        assert result.returncode == 6
        assert "envkit down it-kept" in result.stderr
        assert resources_of(backend, "it-kept")
    finally:
        envkit_cli("down", "it-kept", check=True)
    assert resources_of(backend, "it-kept") == []


def test_a_failing_job_is_named_with_its_exit_code_and_output(backend: Backend) -> None:
    result = envkit_cli("up", str(TEST_BLUEPRINTS / "failing-job"), "--name", "it-failing-job")
    assert result.returncode == 6
    assert "error: service setup: job exited with code 3" in result.stderr
    assert "setup: schema v7 is missing" in result.stderr
    assert resources_of(backend, "it-failing-job") == []


def test_down_removes_every_container_network_and_volume(backend: Backend) -> None:
    up = envkit_cli("up", str(TEST_BLUEPRINTS / "volumes"), "--name", "it-volumes", "--json", check=True)
    doc = json.loads(up.stdout)
    assert len(doc["services"]["web"]["replicas"]) == 3
    assert doc["outputs"]["RUN_ID"] == "it-volumes"
    kinds = sorted(r.split()[0] for r in resources_of(backend, "it-volumes"))
    assert kinds.count("container") == 4 and kinds.count("network") == 1 and kinds.count("volume") == 1
    # The job wrote into the run's own volume; every replica sees it.
    cat = envkit_cli("exec", "it-volumes", "web", "--replica", "2", "--", "cat", "/data/greeting", check=True)
    assert cat.stdout.strip() == "hello"
    ls = envkit_cli("ls", check=True)
    assert "it-volumes" in ls.stdout
    started = time.monotonic()
    down = envkit_cli("down", "it-volumes", check=True)
    assert "removed 4 containers, 1 networks, 1 volumes" in down.stdout
    assert time.monotonic() - started < 30
    assert resources_of(backend, "it-volumes") == []
    assert (TEST_BLUEPRINTS / "volumes" / "blueprint.yaml").is_file()  # the bind source is untouched
    again = envkit_cli("down", "it-volumes")
    assert again.returncode == 0 and "no run it-volumes: nothing to remove" in again.stderr  # as compose down


def test_run_hands_outputs_to_the_command_exits_with_its_code_and_tears_down(backend: Backend) -> None:
    probe = (
        "import json, os, sys, urllib.request, psycopg\n"
        "api = os.environ['API_URL']\n"
        "req = urllib.request.Request(api + '/orders', data=json.dumps({'email': 'run@example.test', "
        "'amount_cents': 700}).encode(), method='POST', headers={'Content-Type': 'application/json'})\n"
        "order = json.load(urllib.request.urlopen(req, timeout=10))\n"
        "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
        "    n = c.execute('SELECT count(*) FROM orders WHERE id = %s', (order['id'],)).fetchone()[0]\n"
        "doc = json.load(open(os.environ['ENVKIT_OUTPUTS_FILE']))\n"
        "assert doc['run'] == os.environ['ENVKIT_RUN'] == 'it-run'\n"
        "sys.exit(0 if n == 1 else 1)\n"
    )
    ok = envkit_cli("run", "blueprints/shop", "--name", "it-run", "--", sys.executable, "-c", probe)
    assert ok.returncode == 0, ok.stderr
    assert resources_of(backend, "it-run") == []
    failed = envkit_cli("run", str(ROOT / "blueprints" / "hello"), "--", "sh", "-c", 'test -n "$HELLO_URL" && exit 3')
    assert failed.returncode == 3
    assert "Traceback" not in failed.stderr


def test_ctrl_c_during_up_removes_what_was_created(backend: Backend) -> None:
    exe = Path(sys.executable).with_name("envkit")
    proc = subprocess.Popen([str(exe), "up", str(TEST_BLUEPRINTS / "never-ready"), "--name", "it-ctrl-c"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not backend.list_containers({L.RUN: "it-ctrl-c"}) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert resources_of(backend, "it-ctrl-c") == []


def test_sigterm_during_run_tears_down(backend: Backend) -> None:
    exe = Path(sys.executable).with_name("envkit")
    proc = subprocess.Popen([str(exe), "run", "blueprints/hello", "--name", "it-sigterm", "--", "sleep", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = backend.list_containers({L.RUN: "it-sigterm"})
        if states and all(s.running for s in states):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert resources_of(backend, "it-sigterm") == []


def test_an_unreachable_engine_is_one_clear_line() -> None:
    result = envkit_cli("ls", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in result.stderr
    assert "DOCKER_HOST" in result.stderr


def test_validate_and_plan_need_no_engine() -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    # In this environment the engine is really out of reach: a command that needs it fails as it must ...
    engine_bound = envkit_cli("plan", "blueprints/shop", "--name", "p1", env=env)
    assert engine_bound.returncode == 4, engine_bound.stderr
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in engine_bound.stderr
    # ... and these succeed without it.
    validate = envkit_cli("validate", "blueprints/shop", env=env)
    assert validate.returncode == 0, validate.stderr
    assert "ok — blueprint 'shop'" in validate.stdout
    plan = envkit_cli("plan", "--offline", "blueprints/shop", "--name", "p1", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "create:api-1" in plan.stdout and "envkit-p1-backend" in plan.stdout


def test_healthcheck_and_log_probes_gate_their_dependants(backend: Backend) -> None:
    import envkit

    def first_line_at(container: str, text: str) -> str:
        """Engine timestamp (RFC 3339, sortable) of the first log line containing ``text``."""
        raw = backend.api.logs(container, timestamps=True).decode()  # type: ignore[attr-defined]
        return next(line.split(" ", 1)[0] for line in raw.splitlines() if text in line)

    with envkit.up(TEST_BLUEPRINTS / "probes", name="it-probes") as env:
        rows = {s.service: s for s in env.status()}
        assert {name: row.ready for name, row in rows.items()} == {
            "healthy": "ready", "logger": "ready", "after": "ready"}
        health = backend.api.inspect_container(rows["healthy"].container)["State"]["Health"]  # type: ignore[attr-defined]
        assert health["Status"] == "healthy"  # up waited for the image's own HEALTHCHECK
        first_healthy = min(h["End"] for h in health["Log"] if h["ExitCode"] == 0)
        listening = first_line_at(rows["logger"].container, "listening on :7000")
        # The dependant's own process (pre-started behind the gate) printed its first line only after
        # the log line was seen and the health check had passed.
        started = first_line_at(rows["after"].container, "started")
        assert started > listening
        assert started[:23] > first_healthy[:23]  # both RFC 3339 UTC; compare to the millisecond
    assert resources_of(backend, "it-probes") == []


def test_an_environment_left_open_is_removed_at_interpreter_exit(backend: Backend) -> None:
    script = (
        "import envkit\n"
        "env = envkit.up('tests/blueprints/good/volumes', name='it-atexit')\n"
        "print(env.outputs['RUN_ID'])\n"  # no down(), no with-block: the process simply ends
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "it-atexit"
    assert "Traceback" not in result.stderr
    assert resources_of(backend, "it-atexit") == []


def test_pre_started_services_run_their_own_process_only_after_release(backend: Backend) -> None:
    import envkit

    with envkit.up("blueprints/shop", name="it-gate", seed=False) as env:  # the gate, not db's seeded rows
        # The gated api became the service's own process (exec), as PID 1 with its own command line.
        top = env.exec("api", ["cat", "/proc/1/cmdline"]).output.split("\0")
        assert top[:3] == ["python3", "-m", "shop.api"]
        assert env.exec("api", ["test", "-e", "/.envkit-go"]).exit_code == 0
        db = backend.inspect_container("envkit-it-gate-db-1")
        migrate_logs = env.logs("migrate")
        assert "migrat" in migrate_logs.lower()
        assert db.running
    assert resources_of(backend, "it-gate") == []


def test_an_image_without_a_shell_is_started_plainly_in_dependency_order(backend: Backend) -> None:
    import envkit

    with envkit.up(TEST_BLUEPRINTS / "no-shell", name="it-no-shell") as env:
        rows = {s.service: s for s in env.status()}
        assert {n: r.ready for n, r in rows.items()} == {"first": "ready", "second": "ready", "third": "ready"}
        first = backend.inspect_container(rows["first"].container)
        for name in ("second", "third"):
            # Not gated (no shell; prestart: false): their containers start only once first is ready.
            state = backend.inspect_container(rows[name].container)
            assert state.started_at > first.started_at
            assert env.exec(name, ["cat", "/proc/1/cmdline"]).output.split("\0")[0] == "sleep"
    assert resources_of(backend, "it-no-shell") == []


def test_hardened_services_read_only_cap_drop_and_init(backend: Backend) -> None:
    import envkit

    with envkit.up(TEST_BLUEPRINTS / "hardened", name="it-hardened") as env:
        rows = {s.service: s for s in env.status()}
        assert {n: r.ready for n, r in rows.items()} == {"first": "ready", "locked": "ready", "bare": "ready",
                                                         "reaped": "ready"}
        # init: the engine's init is PID 1, in front of the gate that became the service's own process.
        assert env.exec("reaped", ["cat", "/proc/1/cmdline"]).output.split("\0")[0] == "/sbin/docker-init"
        children = env.exec("reaped", ["cat", "/proc/1/task/1/children"]).output.split()
        assert [env.exec("reaped", ["cat", f"/proc/{c}/cmdline"]).output.split("\0")[0] for c in children] == ["sleep"]
        # cap_drop: [ALL]: no capability left, so root cannot chown; first keeps the engine's default set.
        assert _effective_caps(env, "bare") == 0 and _effective_caps(env, "first") != 0
        assert env.exec("bare", ["chown", "1:1", "/tmp"]).exit_code != 0
        limits = env.exec("bare", ["cat", "/proc/1/limits"]).output
        assert re.search(r"Max open files\s+1024\s+2048", limits) and re.search(r"Max processes\s+512\s+512", limits)
        refused = env.exec("locked", ["touch", "/etc/x"])
        assert refused.exit_code != 0 and "Read-only file system" in refused.output
        assert env.exec("locked", ["touch", "/tmp/x", "/data/x"]).exit_code == 0  # its tmpfs and volume
        assert env.exec("first", ["touch", "/etc/x"]).exit_code == 0  # only the service that asks for it
        first = backend.inspect_container(rows["first"].container)
        locked = backend.inspect_container(rows["locked"].container)
        assert first.started_at and locked.started_at
        # Not gated: its container started once first was ready, at least 0.5 s after first began.
        assert _stamp(locked.started_at) - _stamp(first.started_at) >= 0.5
        assert env.exec("locked", ["cat", "/proc/1/cmdline"]).output.split("\0")[0] == "sleep"
    assert resources_of(backend, "it-hardened") == []


def _stamp(text: str) -> float:
    """An engine's RFC 3339 time (nanoseconds, Z) in seconds."""
    from datetime import datetime
    whole, _, rest = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{rest or 0}")


def _effective_caps(env: object, service: str) -> int:
    status = env.exec(service, ["cat", "/proc/1/status"]).output  # type: ignore[attr-defined]
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
