"""Faults on a live run, on the real engine, measured by their effect: web (hello's server on :8000) and a
client container that probes it by its DNS name; the host probes the published port."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import PortKey
from envkit.errors import Conflict
from envkit.faults import apply as faults

from .conftest import BLUEPRINTS, envkit_cli, resources_of

pytestmark = pytest.mark.integration
HELLO = BLUEPRINTS / "hello" / "web"

# Run in the client: N probes to web:8000, each a request/response; prints one word per probe.
PROBE = """
import socket, sys, time
n, timeout = int(sys.argv[1]), float(sys.argv[2])
for _ in range(n):
    t = time.monotonic()
    try:
        s = socket.create_connection(("web", 8000), timeout)
        s.sendall(b"GET /health HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n")
        d = b""
        while c := s.recv(4096):
            d += c
        s.close()
        print("ok %.1f %d" % ((time.monotonic() - t) * 1000, len(d)))
    except ConnectionRefusedError:
        print("refused")
    except ConnectionResetError:
        print("reset")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print("error", e.errno)
"""


def web_and_client(tmp_path_factory: pytest.TempPathFactory, name: str, replicas: int = 1) -> Iterator[api.Environment]:
    """A run of web (hello's server) and a client container that probes it; removed, and checked, after."""
    folder: Path = tmp_path_factory.mktemp(name)
    shutil.copytree(HELLO, folder / "web")
    (folder / "blueprint.yaml").write_text(f"""
name: {name}
services:
  web:
    build: ./web
    replicas: {replicas}
    ports: [8000]
    ready: {{http: {{port: 8000, path: /health}}}}
  client:
    build: ./web
    command: [sleep, infinity]
""", encoding="utf-8")
    environment = api.up(folder / "blueprint.yaml")
    yield environment
    backend, run = environment.backend, environment.run_id
    environment.down()
    assert resources_of(backend, run) == []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api.Environment]:
    yield from web_and_client(tmp_path_factory, "it-faults")


def probe(env: api.Environment, n: int = 1, timeout: float = 2.0) -> list[str]:
    out = env.exec("client", ["python3", "-c", PROBE, str(n), str(timeout)]).output
    return out.strip().splitlines()


def host_get(env: api.Environment, timeout: float = 2.0, port: int | None = None) -> str:
    with socket.create_connection(("127.0.0.1", port or env.port("web", 8000)), timeout=timeout) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode()


def _ms(lines: list[str]) -> list[float]:
    return [float(x.split()[1]) for x in lines if x.startswith("ok")]


def test_pause_hangs_until_healed(env: api.Environment) -> None:
    before = host_get(env)
    record = faults.apply(env.backend, env.run_id, "web", "pause")
    with pytest.raises(TimeoutError):
        host_get(env, timeout=1.0)
    assert [f.id for f in faults.faults(env.backend, env.run_id)] == [record.id]
    faults.heal(env.backend, env.run_id, "web")
    assert host_get(env) == before
    assert faults.faults(env.backend, env.run_id) == []


def test_kill_makes_the_dependant_see_refused(env: api.Environment) -> None:
    port, before = env.port("web", 8000), host_get(env)
    faults.apply(env.backend, env.run_id, "web", "kill")
    assert probe(env)[0] in ("refused", "error -2", "error -3", "timeout")  # stopped: no address, or refused
    faults.heal(env.backend, env.run_id)
    deadline = time.monotonic() + 15
    while not probe(env)[0].startswith("ok") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert probe(env)[0].startswith("ok")
    # healed: the same host port answers, as before (envkit chose it at create: it lasts the replica's life)
    assert env.refresh().services["web"][0].ports[PortKey(8000)].port == port
    assert host_get(env, port=port) == before
    env.stop("web")
    env.start("web")
    assert env.refresh().services["web"][0].ports[PortKey(8000)].port == port
    assert host_get(env, port=port) == before


def test_disconnect_and_heal_under_the_same_name(env: api.Environment) -> None:
    before = env.refresh().services["web"][0].addresses
    faults.apply(env.backend, env.run_id, "web", "disconnect")
    assert not probe(env, timeout=1.0)[0].startswith("ok")
    faults.heal(env.backend, env.run_id, "web")
    assert probe(env)[0].startswith("ok")
    after = env.refresh().services["web"][0].addresses
    assert set(after) == set(before)
    print("address before/after reconnect:", before, after)


def test_latency_via_the_proxy_between_services_and_from_the_host(env: api.Environment) -> None:
    base = _ms(probe(env, 10))
    faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "200ms"})
    slow = _ms(probe(env, 10))
    t = time.monotonic()
    assert "ok" in host_get(env)
    host_ms = (time.monotonic() - t) * 1000
    print(f"latency: direct p50 {sorted(base)[5]:.1f} ms, faulted {sorted(slow)[5]:.1f} ms, host {host_ms:.0f} ms")
    assert len(slow) == 10 and all(190 <= x <= 600 for x in slow)
    assert 190 <= host_ms <= 1000
    faults.heal(env.backend, env.run_id, "web")
    healed = _ms(probe(env, 10))
    assert len(healed) == 10 and sorted(healed)[5] < 100
    assert env.backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"}) == []  # no sidecar, no record
    # towards one peer only: the client's connections are slowed, the host's are not
    faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "200ms", "peer": "client"})
    assert all(190 <= x <= 600 for x in _ms(probe(env, 3)))
    t = time.monotonic()
    host_get(env)
    assert (time.monotonic() - t) * 1000 < 150
    faults.heal(env.backend, env.run_id, "web")


def test_reset_is_seen_as_reset_and_a_timeout_times_out(env: api.Environment) -> None:
    before = host_get(env)
    faults.apply(env.backend, env.run_id, "web", "reset", {"direction": "upstream"})
    assert probe(env, 3) == ["reset"] * 3
    with pytest.raises(Conflict, match="already has connection fault"):
        faults.apply(env.backend, env.run_id, "web", "latency", {"latency": 10})
    faults.heal(env.backend, env.run_id, "web")
    assert probe(env)[0].startswith("ok")
    faults.apply(env.backend, env.run_id, "web", "timeout", {})
    assert probe(env, 2, timeout=1.0) == ["timeout"] * 2  # a client with a 1 s timeout times out
    faults.heal(env.backend, env.run_id, "web")
    assert host_get(env) == before  # byte for byte as before


def test_loss_drops_about_that_share(env: api.Environment) -> None:
    faults.apply(env.backend, env.run_id, "web", "loss", {"percent": 30})
    lines = probe(env, 120, timeout=0.3)
    lost = sum(not x.startswith("ok") for x in lines) / len(lines)
    print(f"loss 30 %: {lost:.0%} of 120 probes failed")
    assert 0.12 <= lost <= 0.55
    faults.heal(env.backend, env.run_id)
    assert all(x.startswith("ok") for x in probe(env, 20))


def test_bad_input_is_a_clear_error(env: api.Environment, backend: Backend) -> None:
    from envkit.errors import UsageError
    with pytest.raises(UsageError, match="no service 'nope'"):
        faults.apply(env.backend, env.run_id, "nope", "pause")
    with pytest.raises(UsageError, match="unknown fault kind"):
        faults.apply(env.backend, env.run_id, "web", "explode")
    assert not backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"})


def test_partition_from_one_peer_only(env: api.Environment) -> None:
    faults.apply(env.backend, env.run_id, "web", "disconnect", {"peer": "client"})  # = partition
    assert probe(env, 2, timeout=0.5) == ["timeout"] * 2
    assert "ok" in host_get(env)  # the host (the network's gateway) still gets through
    faults.heal(env.backend, env.run_id, "web")
    assert probe(env)[0].startswith("ok")


HOLD = "import socket, time; s = socket.create_connection(('web', 8000), 5); time.sleep(30)"


def test_connections_open_before_a_connection_fault_are_named(env: api.Environment) -> None:
    """The REDIRECT changes only connections opened after it: a client's pool (redis-py, psycopg, keep-alive)
    keeps talking to the service directly and the fault seems to do nothing. envkit counts the connections
    established to the faulted port when it applies the fault and says so (the CLI's note, env.fault's
    warning); a fresh connection is faulted."""
    def established() -> int:  # connections to web's port 8000 in state 01 (ESTABLISHED), as web sees them
        listed = env.exec("web", ["sh", "-c", "grep ':1F40 ' /proc/net/tcp | awk '{print \" \" $4 \" \"}'"]).output
        return listed.count(" 01 ")

    deadline = time.monotonic() + 40  # one an earlier test of the module left open ends first (the module's run)
    while established() and time.monotonic() < deadline:
        time.sleep(0.5)
    env.exec("client", ["sh", "-c", f'python3 -c "{HOLD}" >/dev/null 2>&1 &'])
    deadline = time.monotonic() + 20
    while not established() and time.monotonic() < deadline:
        time.sleep(0.2)
    applied = envkit_cli("fault", env.run_id, "web", "latency", "latency=200ms", check=True)
    try:
        (record,) = faults.faults(env.backend, env.run_id)
        assert [dict(u.get("live") or {}) for u in record.undo] == [{"8000": 1}]
        assert "connections already open when fault" in applied.stderr and "envkit-" in applied.stderr
        assert ":8000 (1)" in applied.stderr
        assert all(190 <= x <= 600 for x in _ms(probe(env, 2)))  # new connections are faulted
    finally:
        faults.heal(env.backend, env.run_id, "web")  # the held connection ends by itself (30 s) or with the run


def test_the_cli_applies_heals_and_times_faults_of_another_process(env: api.Environment) -> None:
    run = env.run_id
    applied = envkit_cli("fault", run, "web", "pause", check=True)
    assert "applied" in applied.stderr and "envkit heal" in applied.stderr
    status = envkit_cli("status", run)
    assert "fault " in status.stdout and "pause web" in status.stdout
    healed = envkit_cli("heal", run, "web", check=True)
    assert "1 fault healed" in healed.stderr
    assert "ok" in host_get(env)
    t = time.monotonic()
    timed = envkit_cli("fault", run, "web", "latency", "latency=300ms", "--for", "1s", "--seed", "7", check=True)
    assert "seed 7" in timed.stderr and "healed" in timed.stderr and time.monotonic() - t >= 1
    assert faults.faults(env.backend, run) == []
    bad = envkit_cli("fault", run, "web", "latency", "latency=soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr and "Traceback" not in bad.stderr


def test_a_run_torn_down_mid_fault_leaves_nothing(env: api.Environment) -> None:
    # left applied on purpose: the module's teardown asserts that no helper, proxy or record remains
    faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "50ms"})
    faults.apply(env.backend, env.run_id, "web", "partition", {"peer": "client"})
    assert len(env.backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"})) == 3  # 2 records + 1 proxy
