"""The fault engine's decisions (pure) and its records on the in-memory engine: seeded loss compiled into
nth rules, the mechanism chosen per fault (netem, NET_ADMIN fallbacks), the timeline read by another
process, and faults put back after their replica restarted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from envkit import api
from envkit import labels as L
from envkit.backends.fake import FakeBackend
from envkit.errors import Unsupported, UsageError
from envkit.faults import apply as faults
from envkit.faults.follow import moved
from envkit.faults.kinds import parse
from envkit.faults.rules import PERIOD, choose_via, loss_rules, net_admin_allowed, netem_commands, netem_refusal, rule_script

from .conftest import WriteBlueprint

BP = """
    name: fx
    services:
      db: {image: postgres:16, ports: [5432]}
      api: {image: postgres:16}
"""
TC_UNKNOWN = 'Error: Specified qdisc kind is unknown.\n'


class Helpers(dict[str, Any]):
    """A fake-engine setting that applies to every fault helper of run r1 (their names are random)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.startswith("envkit-r1-fault-")

    def __getitem__(self, name: str) -> Any:
        return self.value


@pytest.fixture
def fake() -> FakeBackend:
    backend = FakeBackend(images={"postgres:16", "envkit/fault-netns:x"})
    backend.exit_codes = Helpers(0)  # type: ignore[assignment]  # every helper script succeeds
    return backend


@pytest.fixture
def env(write_blueprint: WriteBlueprint, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[api.Environment]:
    monkeypatch.setattr("envkit.faults.sidecar.ensure_image", lambda backend, which: "envkit/fault-netns:x")
    monkeypatch.delenv("ENVKIT_FAULTS_NET_ADMIN", raising=False)
    faults._no_net_admin.clear()
    faults._no_netem.clear()
    environment = api.up(write_blueprint(BP, {}), name="r1", env={}, backend=fake)
    yield environment
    environment.down()
    assert fake.list_resources({L.RUN: "r1"}) == []  # records, timeline and helpers go with the run


def test_seeded_loss_is_a_fixed_sequence_of_nth_rules() -> None:
    a = loss_rules(30, 7, "", "-m comment --comment envkit-x")
    assert a == loss_rules(30, 7, "", "-m comment --comment envkit-x") != loss_rules(30, 8, "", "")
    marks, drop = a[:-1], a[-1]
    assert len(marks) == round(0.3 * PERIOD) and all("--mode nth" in r and "--ctstate NEW" in r for r in marks)
    assert "-m mark" in drop and "-j DROP" in drop
    assert len({r.split("--packet ")[1].split()[0] for r in marks}) == len(marks)  # distinct positions
    assert all("conntrack" not in r for r in loss_rules(30, 7, "", "", per="packet"))
    unseeded = loss_rules(30, None, " -s 10.0.0.2", "")
    assert unseeded == ["%OP% INPUT -s 10.0.0.2 -m statistic --mode random --probability 0.3000  -j DROP"]
    assert loss_rules(0, 7, "", "") == []
    assert rule_script("-A", ["%OP% INPUT -j X", "-t mangle %OP% INPUT -j Y"]).splitlines()[1:-1] == [
        "*filter", "-A INPUT -j X", "COMMIT", "*mangle", "-A INPUT -j Y", "COMMIT"]
    assert rule_script("+A", ["-t mangle %OP% INPUT -j X"]) == \
        "iptables -t mangle -C INPUT -j X 2>/dev/null || iptables -t mangle -A INPUT -j X"
    with pytest.raises(UsageError, match="'per': packet or connection"):
        parse("loss", {"percent": 5, "per": "byte"})


def test_the_mechanism_is_chosen_per_fault() -> None:
    latency, loss, part = parse("latency", {"latency": 5}), parse("loss", {"percent": 5}), parse("partition", {"peer": "x"})
    assert [choose_via(s, True) for s in (latency, loss, part, parse("pause", {}))] == ["proxy", "iptables", "iptables",
                                                                                       "engine"]
    assert choose_via(latency, False) == "front" and choose_via(part, False) == "disconnect"
    with pytest.raises(UsageError, match=r"NET_ADMIN.*fault disconnect"):
        choose_via(loss, False)
    assert choose_via(parse("latency", {"latency": 5, "via": "netem"}), True) == "netem"
    refusal = netem_refusal(TC_UNKNOWN)
    assert refusal and "no netem qdisc" in refusal and "Specified qdisc kind is unknown" in refusal
    assert netem_refusal("RTNETLINK answers: File exists") is None
    with pytest.raises(UsageError, match="no netem qdisc"):
        choose_via(parse("loss", {"percent": 5, "via": "netem"}), True, refusal)
    for params, message in [({"latency": 5, "via": "netem", "peer": "api"}, "peer=, port="),
                            ({"latency": 5, "via": "netem", "direction": "both"}, "need the proxy"),
                            ({"latency": 5, "via": "iptables"}, "not one of proxy, netem, front"),
                            ({"latency": 5, "peer": "api"}, None)]:
        if message is None:
            with pytest.raises(UsageError, match="peer= needs the iptables redirect"):
                choose_via(parse("latency", params), False)
            continue
        with pytest.raises(UsageError, match=message):
            choose_via(parse("latency", params), True)
    with pytest.raises(UsageError, match="takes no via"):
        choose_via(parse("pause", {"via": "proxy"}), True)
    with pytest.raises(UsageError, match="'via': one of"):
        parse("latency", {"latency": 5, "via": "magic"})
    add, heal = netem_commands(parse("latency", {"latency": "200ms", "jitter": 20, "via": "netem"}))
    assert "netem delay 200ms 20ms" in add and "tc qdisc del" in heal
    assert "netem loss 30%" in netem_commands(parse("loss", {"percent": 30}))[0]
    assert not net_admin_allowed({"ENVKIT_FAULTS_NET_ADMIN": "0"}) and net_admin_allowed({})


def test_the_timeline_is_on_the_engine_for_every_process(env: api.Environment, fake: FakeBackend) -> None:
    with env.fault("db", "pause"):
        pass
    env.fault("api", "restart")
    kept = faults.apply(fake, "r1", "db", "stop", seed=5)
    other = api.attach("r1", backend=fake)  # another process: only the engine's labels
    entries = other.faults()
    assert [(e.record.kind, bool(e.healed_at)) for e in entries] == [("pause", True), ("restart", True), ("stop", False)]
    assert entries[2].record.seed == 5 and entries[2].record.targets == ("envkit-r1-db-1",)
    assert "(active)" in str(entries[2]) and " healed " in str(entries[0])
    faults.heal(fake, "r1")
    assert all(e.healed_at for e in other.faults())
    roles = sorted(r.labels[L.ROLE] for r in fake.list_resources({L.RUN: "r1", "io.envkit.fault": None}))
    assert roles == ["fault-log"] * 3 and faults.faults(fake, "r1") == [] and kept.id in {e.record.id for e in env.faults()}


def test_a_fault_is_put_back_after_its_replica_restarted(env: api.Environment, fake: FakeBackend) -> None:
    record = faults.apply(fake, "r1", "db", "loss", {"percent": 20}, seed=3)
    db = env.refresh().services["db"][0]
    assert not moved(record.undo[0], db)
    fake.stop_container(db.id, 1)
    fake.start_container(db.id)  # a new StartedAt: a new network namespace
    assert moved(record.undo[0], fake.inspect_container(db.id))
    scripts = len([c for c in fake.calls if c[0] == "create_container"])
    again = next(e.record for e in env.faults() if e.record.id == record.id)
    assert again.generation == 1 and again.undo[0]["started"] == fake.inspect_container(db.id).started_at
    assert len([c for c in fake.calls if c[0] == "create_container"]) == scripts + 1  # one helper: the rules again
    assert env.faults()[-1].record.generation == 1  # nothing moved since: nothing done
    vols = [r.name for r in fake.list_resources({L.RUN: "r1", L.ROLE: "fault"}) if r.kind == "volume"]
    assert vols == [f"envkit-r1-fault-{record.id}-g1"]  # the older generation is gone
    env.restart("db")  # envkit's own restart re-applies before it returns
    assert faults.faults(fake, "r1")[0].generation == 2
    faults.heal(fake, "r1")
    assert faults.faults(fake, "r1") == []


def test_netem_is_refused_and_net_admin_refusal_falls_back(env: api.Environment, fake: FakeBackend,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake.exit_codes = Helpers(2)  # type: ignore[assignment]
    fake.log_text = Helpers(TC_UNKNOWN)  # type: ignore[assignment]
    with pytest.raises(Unsupported, match="via=netem on envkit-r1-db-1: this engine's kernel has no netem"):
        faults.apply(fake, "r1", "db", "latency", {"latency": 50, "via": "netem"})
    with pytest.raises(UsageError, match="no netem qdisc"):  # known now: refused before any helper runs
        faults.apply(fake, "r1", "db", "loss", {"percent": 5, "via": "netem"})
    fake.log_text = Helpers("iptables: Permission denied (you must be root)\n")  # type: ignore[assignment]
    record = faults.apply(fake, "r1", "db", "partition", {"peer": "api"})  # detected: falls back to disconnect
    assert record.undo[0]["via"] == "disconnect" and env.refresh().services["db"][0].addresses == {}
    faults.heal(fake, "r1")
    assert env.refresh().services["db"][0].addresses
    monkeypatch.setenv("ENVKIT_FAULTS_NET_ADMIN", "0")
    faults._no_net_admin.clear()
    with pytest.raises(UsageError, match="helpers may not have NET_ADMIN"):
        faults.apply(fake, "r1", "db", "partition", {"peer": "api", "via": "iptables"})


def test_envkit_restart_puts_the_fault_back_as_env_restart_does(env: api.Environment, fake: FakeBackend) -> None:
    """`envkit restart` / `start` / `rebuild` call envkit.live directly, not through an Environment: the
    re-application belongs there, or the CLI's restart left the replica unfaulted until the next entry point."""
    from envkit import live

    record = faults.apply(fake, "r1", "db", "loss", {"percent": 20}, seed=3)
    result = live.lifecycle(fake, "r1", "restart", ["db"])  # what the CLI runs
    (again,) = faults.faults(fake, "r1")
    assert again.id == record.id and again.generation == 1
    assert again.undo[0]["started"] == result.info.replicas("db")[0].started_at
    assert any("fault" in n and record.id in n for n in result.notes)
    faults.heal(fake, "r1")
