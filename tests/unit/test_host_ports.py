"""Host ports envkit chooses at create (envkit.backends.hostports), and a container made again when a
chosen port is taken before its first start (envkit.handlers)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends import hostports
from envkit.backends.base import PortBinding, PortKey
from envkit.backends.fake import FakeBackend
from envkit.cli import main

BLUEPRINT = "name: hp\nservices:\n  web:\n    image: nginx:1\n    ports: [80, '19999:81']\n"


def test_free_ports_are_written_in_and_pinned_ones_kept() -> None:
    ports = (PortBinding(PortKey(80)), PortBinding(PortKey(81), host_port=19999), PortBinding(PortKey(53, "udp")),
             PortBinding(PortKey(82), "0.0.0.0"), PortBinding(PortKey(83), "203.0.113.9"))
    chosen = hostports.choose(ports)
    assert [p.container for p in chosen] == [p.container for p in ports]
    assert chosen[1].host_port == 19999 and chosen[4].host_port is None  # not an address of this host: the engine's
    picked = [chosen[0].host_port, chosen[2].host_port, chosen[3].host_port]
    assert all(picked) and len(set(picked)) == 3 and [p.host_ip for p in chosen] == [p.host_ip for p in ports]
    with socket.socket() as s:  # free: this host can bind it
        s.bind(("127.0.0.1", chosen[0].host_port or 0))


def run_up(tmp_path: Path, fake: FakeBackend, run: str) -> int:
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT)
    return main(["up", str(tmp_path), "--name", run], backend=fake)


def web(fake: FakeBackend, run: str) -> list[str]:
    return [c.id for c in fake.containers.values() if c.spec.labels and (L.RUN, run) in c.spec.labels]


def test_a_chosen_port_taken_before_the_start_makes_the_container_again(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeBackend(images={"nginx:1"})
    fake.busy_ports |= {("127.0.0.1", 49153), ("127.0.0.1", 49154)}  # the fake's first two choices
    assert run_up(tmp_path, fake, "r1") == 0
    [ident] = web(fake, "r1")
    state = fake.inspect_container(ident)
    assert state.ports[PortKey(80)].port == 49155 and state.ports[PortKey(81)].port == 19999
    assert [c for c in fake.calls if c[0] == "remove_container"] != []
    assert main(["down", "r1"], backend=fake) == 0 and web(fake, "r1") == []


def test_a_taken_pinned_port_or_too_many_takes_fail_and_leave_nothing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeBackend(images={"nginx:1"})
    fake.busy_ports.add(("127.0.0.1", 19999))
    assert run_up(tmp_path, fake, "r2") == 6
    assert "host port 127.0.0.1:19999 is already in use" in capsys.readouterr().err
    assert len([c for c in fake.calls if c[0] == "create_container"]) == 1  # pinned: not made again
    fake = FakeBackend(images={"nginx:1"})
    fake.busy_ports |= {("127.0.0.1", p) for p in range(49153, 49163)}
    assert run_up(tmp_path, fake, "r3") == 6
    assert "was taken before it started, 4 times in a row" in capsys.readouterr().err
    assert web(fake, "r3") == []
