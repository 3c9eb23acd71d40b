"""Host ports envkit chooses at create, on the real engine: a chosen port another program takes before
the container's first start makes envkit create the container again with new ports, and nothing of the
first container is left (the kept-for-life half is in the backend contract and test_faults)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from envkit import api
from envkit.backends import Backend, hostports
from envkit.backends.base import PortBinding, PortKey

from .conftest import build_small_image, resources_of

SMALL = "FROM debian:bookworm-slim\nLABEL io.envkit.test=hostports\nCMD [\"sleep\", \"infinity\"]\n"


def test_a_chosen_port_taken_before_the_start_is_chosen_again(backend: Backend, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    image = build_small_image(backend, tmp_path / "img", SMALL)
    (tmp_path / "blueprint.yaml").write_text(f"name: hp\nservices:\n  web:\n    image: {image}\n    ports: [8000]\n")
    real = hostports.choose
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        calls: list[int] = []

        def first_busy(ports: tuple[PortBinding, ...]) -> tuple[PortBinding, ...]:
            calls.append(1)  # the first choice is a port another program listens on: the start must fail
            return tuple(PortBinding(p.container, p.host_ip, busy) for p in ports) if len(calls) == 1 else real(ports)

        monkeypatch.setattr(hostports, "choose", first_busy)
        run = f"it-hostports-{os.getpid()}"
        env = api.up(tmp_path, name=run, env={}, backend=backend)
        try:
            [web] = env.refresh().services["web"]
            port = web.ports[PortKey(8000)].port
            assert len(calls) == 2 and port not in (busy, 0)
            assert [c.name for c in env.info.containers] == [f"envkit-{run}-web-1"]  # the first one is gone
        finally:
            env.down()
    assert resources_of(backend, run) == []
