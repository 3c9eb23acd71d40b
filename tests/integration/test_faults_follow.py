"""The fault engine's harder cases on the real engine, measured by their effect: a fault survives its
replica's restarts, seeded loss replays, netem is refused clearly where the kernel lacks it, the
no-NET_ADMIN fallback (a front proxy on the service's name), and the timeline seen by another process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit import api
from envkit import labels as L
from envkit.errors import Unsupported
from envkit.faults import apply as faults

from .conftest import BLUEPRINTS, envkit_cli
from .test_faults import host_get, probe, web_and_client

pytestmark = pytest.mark.integration
HELLO = BLUEPRINTS / "hello" / "web"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api.Environment]:
    yield from web_and_client(tmp_path_factory, "it-faults-follow")


def ms(lines: list[str]) -> list[float]:
    return [float(x.split()[1]) for x in lines if x.startswith("ok")]


def helpers(env: api.Environment) -> list[str]:
    """What faults left on the engine besides the timeline: sidecars, helpers, applied records."""
    return [f"{r.kind} {r.name}" for r in env.backend.list_resources({L.RUN: env.run_id, L.ROLE: "fault"})]


def until_ok(env: api.Environment, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not probe(env, timeout=1.0)[0].startswith("ok") and time.monotonic() < deadline:
        time.sleep(0.2)


def test_latency_survives_restarts_and_heal_restores_exactly(env: api.Environment) -> None:
    before = host_get(env)
    record = faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "200ms"})
    web = env.refresh().services["web"][0]
    env.backend.stop_container(web.id, 1)  # what `docker restart` or a restart policy does, behind envkit's back
    env.backend.start_container(web.id)    # (env.restart re-applies the same way: tests/unit/test_faults_engine.py)
    entry = next(e for e in env.faults() if e.record.id == record.id)  # an entry point: re-applies
    until_ok(env)
    after_restart = ms(probe(env, 3))
    print(f"latency after an engine restart {after_restart}")
    assert len(after_restart) == 3 and all(190 <= x <= 1500 for x in after_restart)
    assert entry.record.generation == 1 and "re-applied 1x" in str(entry)
    assert len([h for h in helpers(env) if h.startswith("container")]) == 1  # the old sidecars are gone
    faults.heal(env.backend, env.run_id, "web")
    healthy = ms(probe(env, 5))
    assert len(healthy) == 5 and min(healthy) < 150  # faulted, none is under 200 ms; loaded, some are slow
    env.refresh()  # the restarts gave the published port another host port
    assert host_get(env) == before  # byte for byte
    assert helpers(env) == []


# Connection attempts, one after the other: "lost" when the SYN got no answer within the timeout (a
# dropped SYN is retried by the kernel only after 1 s), so a slow machine does not pass for a lost packet.
CONNECTS = """
import socket, sys
address = socket.gethostbyname("web")
for _ in range(int(sys.argv[1])):
    try:
        socket.create_connection((address, 8000), float(sys.argv[2])).close()
        print("ok")
    except OSError:
        print("lost")
"""


def test_seeded_loss_drops_the_same_probes_twice(env: api.Environment) -> None:
    runs = []
    for _ in range(2):
        faults.apply(env.backend, env.run_id, "web", "loss", {"percent": 30}, seed=7)
        runs.append(env.exec("client", ["python3", "-c", CONNECTS, "100", "0.4"]).output.split())
        faults.heal(env.backend, env.run_id, "web")
    shares = [r.count("lost") / len(r) for r in runs]
    same = sum(a == b for a, b in zip(*runs, strict=True))
    print(f"seeded loss 30 %: {shares[0]:.0%} and {shares[1]:.0%} of 100 connects lost; {same}/100 outcomes alike")
    assert all(0.12 <= s <= 0.6 for s in shares)
    assert runs[0] == runs[1]
    assert all(x.startswith("ok") for x in probe(env, 10))


def test_netem_is_refused_clearly_where_the_kernel_has_none(env: api.Environment) -> None:
    with pytest.raises(Unsupported, match="no netem qdisc") as caught:
        faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "50ms", "via": "netem"})
    assert "Specified qdisc kind is unknown" in str(caught.value)
    cli = envkit_cli("fault", env.run_id, "web", "loss", "percent=10", "via=netem")
    assert cli.returncode == 2 and "no netem qdisc" in cli.stderr and "Traceback" not in cli.stderr
    assert helpers(env) == []
    assert probe(env)[0].startswith("ok")


def test_without_net_admin_a_front_proxy_takes_over_the_name(env: api.Environment,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_FAULTS_NET_ADMIN", "0")
    aliases = env.refresh().services["web"][0].aliases
    record = faults.apply(env.backend, env.run_id, "web", "latency", {"latency": "200ms"})
    assert record.undo[0]["via"] == "front"
    slow = ms(probe(env, 5))
    port = env.port("web", 8000)
    env.refresh()
    assert env.port("web", 8000) == port  # the move keeps the host port envkit chose at create
    host_ms = 1e9
    for _ in range(3):
        t = time.monotonic()
        host_get(env)
        host_ms = min(host_ms, (time.monotonic() - t) * 1000)
    print(f"front proxy: peer by name {slow}, host through the published port {host_ms:.0f} ms (not faulted)")
    assert len(slow) == 5 and all(190 <= x <= 1500 for x in slow)
    assert host_ms < 190  # the host's path does not go through the front (docs/faults.md)
    with pytest.raises(Exception, match="NET_ADMIN"):
        faults.apply(env.backend, env.run_id, "web", "loss", {"percent": 10})
    faults.heal(env.backend, env.run_id, "web")
    healthy = ms(probe(env, 5))
    assert len(healthy) == 5 and min(healthy) < 150  # faulted, none is under 200 ms; loaded, some are slow
    assert env.refresh().services["web"][0].aliases == aliases
    assert env.port("web", 8000) == port and "ok" in host_get(env)
    assert helpers(env) == []


def test_the_timeline_is_seen_by_another_process(env: api.Environment, tmp_path: Path) -> None:
    first = env.fault("web", "pause", seed=11)
    first.heal()
    with env.fault("client", "stop"):
        pass
    other = api.attach(env.run_id)  # another Environment: nothing of this process's memory
    entries = {e.record.id: e for e in other.faults()}
    assert first.record.id in entries and entries[first.record.id].healed_at
    assert entries[first.record.id].record.seed == 11 and entries[first.record.id].record.targets
    status = envkit_cli("status", env.run_id, check=True).stdout
    assert f"fault {first.record.id}" in status and "healed" in status and "pause web" in status
    bundle = envkit_cli("collect", env.run_id, str(tmp_path / "b"), check=True)
    assert bundle.returncode == 0
    text = (tmp_path / "b" / "faults.txt").read_text()
    assert "pause web" in text and "stop client" in text and text.count(" healed ") >= 2


def test_a_stop_or_pause_stays_in_force_through_envkit_start_and_restart(env: api.Environment) -> None:
    # `envkit start` / `restart` ran the replica again (a restart of a paused one unpaused it) while
    # env.faults(), status and heal still called the fault active.
    with env.fault("web", "stop") as stop:
        result = env.start("web")
        assert not env.refresh().services["web"][0].running
        assert f"fault {stop.record.id} (stop web) applied again to the restarted replica" in result.notes
        (row,) = [s for s in env.status() if s.service == "web"]
        assert row.ready.startswith(f"not ready: stopped by fault {stop.record.id}")
    until_ok(env)
    with env.fault("web", "pause") as pause:
        env.restart("web")
        assert env.refresh().services["web"][0].status == "paused"
        assert probe(env, timeout=1.0)[0] == "timeout"  # frozen: the connection hangs
        (entry,) = [e for e in env.faults() if not e.healed_at]
        assert entry.record.id == pause.record.id and entry.record.generation == 1
    until_ok(env)
    assert probe(env)[0].startswith("ok") and helpers(env) == []


def test_a_front_proxy_fault_on_a_service_with_replicas_fronts_each_and_heals_all(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # Each replica's front made the same private network: the second create was a Conflict ("network with
    # name ... already exists"), so the fault could not be applied to a service with replicas.
    gen = web_and_client(tmp_path_factory, "it-faults-front-replicas", replicas=2)
    env = next(gen)
    try:
        with env.fault("web", "latency", latency="200ms", via="front") as fault:
            assert len({u["origin"] for u in fault.record.undo}) == 2 == len(fault.record.undo)
            behind = {u["container"]: {u["origin"]} for u in fault.record.undo}
            assert {c.id: set(c.addresses) for c in env.refresh().services["web"]} == behind
            slow = ms(probe(env, 6))
            assert len(slow) == 6 and all(190 <= x <= 1500 for x in slow), slow  # whichever replica answers
        healthy = ms(probe(env, 5))
        assert len(healthy) == 5 and min(healthy) < 150 and helpers(env) == []
    finally:
        next(gen, None)
