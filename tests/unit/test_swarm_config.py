"""The Swarm backend's configuration from the environment (envkit/backends/_swarm_nodes.py), and the
plan-time refusal of what a swarm cannot do (bind mounts: a node's file system). The backend itself runs
against a real swarm in tests/swarm."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit import api
from envkit.backends._swarm_nodes import parse_nodes
from envkit.backends.base import Capability
from envkit.backends.fake import FakeBackend
from envkit.errors import BlueprintError, UsageError


def test_the_node_map_says_where_engines_and_ports_are_reached() -> None:
    nodes = parse_nodes({"ENVKIT_SWARM_NODES": "n1=tcp://127.0.0.1:4000, n2=tcp://127.0.0.1:4001",
                         "ENVKIT_SWARM_PORTS": "n1:30000=127.0.0.1:41000", "ENVKIT_SWARM_PUBLISH": "31000-31002"})
    assert nodes.engines == {"n1": "tcp://127.0.0.1:4000", "n2": "tcp://127.0.0.1:4001"}
    assert nodes.reach("n1", "10.0.0.5", 30000) == ("127.0.0.1", 41000)
    assert nodes.reach("n2", "10.0.0.6", 30000) == ("10.0.0.6", 30000)  # no mapping: the node's own address
    assert list(nodes.publish) == [31000, 31001, 31002]
    assert list(parse_nodes({}).publish) == list(range(30000, 30005))


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("ENVKIT_SWARM_NODES", "n1", "ENVKIT_SWARM_NODES: 'n1' is not KEY=VALUE"),
    ("ENVKIT_SWARM_PORTS", "n1=127.0.0.1:4", "ENVKIT_SWARM_PORTS: 'n1' is not HOST:PORT"),
    ("ENVKIT_SWARM_PORTS", "n1:30000=127.0.0.1:x", "ENVKIT_SWARM_PORTS: '127.0.0.1:x' is not HOST:PORT"),
    ("ENVKIT_SWARM_PUBLISH", "30005-30000", "ENVKIT_SWARM_PUBLISH: '30005-30000' is not a port range"),
    ("ENVKIT_SWARM_PUBLISH", "many", "ENVKIT_SWARM_PUBLISH: 'many' is not FIRST-LAST"),
])
def test_bad_settings_are_usage_errors_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}"):
        parse_nodes({variable: value})


def test_bind_mounts_are_refused_at_plan_time_on_an_engine_without_host_paths(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "bp.yaml").write_text("name: b\nservices:\n  x:\n    image: debian:bookworm-slim\n"
                                      "    volumes: [./data:/data]\n", encoding="utf-8")
    engine = FakeBackend(images=["debian:bookworm-slim"],
                         capabilities=set(Capability) - {Capability.HOST_PATHS})
    with pytest.raises(BlueprintError, match=r"bp.yaml:5:\d+ services.x.volumes\[0\]: engine fake cannot mount paths"):
        api.plan(tmp_path / "bp.yaml", backend=engine)
    assert engine.list_resources({}) == []
