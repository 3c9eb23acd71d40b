"""The Swarm backend on a real swarm of three Docker engines (tests/swarm/rig), brought up by this module
and torn down at its end: the backend contract (tests/contract) against it, and a small blueprint whose
services spread over the nodes with its outputs reached from 127.0.0.1. Nothing is left on any node.

The rig costs about 10 s when its node image exists (30 s more to build it once) plus the loads; the
whole module stays under three minutes. It runs where a Docker engine and the rig's node flags work; a
rig that cannot come up (infrastructure, not envkit) skips the module with the rig's own error."""

from __future__ import annotations

import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from contract.backend_contract import BackendContract, Harness

from envkit import api
from envkit import labels as L
from envkit.backends import Backend, connect
from envkit.backends.base import BuildSpec, Capability, ExecResult
from envkit.errors import BlueprintError

from .conftest import HELLO
from .conftest import PAIR as BLUEPRINT

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHELL_IMAGE = "FROM debian:bookworm-slim\nLABEL io.envkit.test=contract\nCMD [\"sleep\", \"infinity\"]\n"


@pytest.fixture(scope="module")
def shell_image(backend: Backend) -> str:
    tag = "envkit-test/small:swarm-shell"
    if not backend.image_exists(tag):
        folder = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
        (folder / "Dockerfile").write_text(SHELL_IMAGE, encoding="utf-8")
        backend.build_image(BuildSpec(tag, folder, "Dockerfile", (), None, ()), lambda line: None)
    return tag


class SwarmHarness(Harness):
    def __init__(self, backend: Backend, image: str, scratch: Path) -> None:
        self.backend, self.image, self.scratch = backend, image, scratch

    def program(self, name: str, prints: str = "", exit_code: int | None = None) -> tuple[str, ...]:
        end = f"exit {exit_code}" if exit_code is not None else "exec sleep infinity"
        return ("sh", "-c", f"printf %s {shlex.quote(prints)}; {end}")

    def answer(self, name: str, command: tuple[str, ...], result: ExecResult) -> None:
        pass  # the node's engine runs the command

    def failing_build(self, reason: str) -> Callable[[Callable[[str], None]], None]:
        folder = self.scratch / "broken"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(f"FROM debian:bookworm-slim\nRUN echo {reason} && exit 7\n", encoding="utf-8")
        spec = BuildSpec("envkit-test/broken:contract", folder, "Dockerfile", (), None, ())
        return lambda on_line: self.backend.build_image(spec, on_line)


class TestSwarmBackend(BackendContract):
    @pytest.fixture
    def harness(self, backend: Backend, shell_image: str, tmp_path: Path) -> Harness:
        return SwarmHarness(backend, shell_image, tmp_path)


def test_the_swarm_backend_declares_what_it_can(backend: Backend) -> None:
    assert backend.name == "swarm"
    assert backend.capabilities == frozenset({Capability.BUILD, Capability.INTERACTIVE_EXEC, Capability.COPY_FILES})


def test_a_blueprint_spreads_over_the_nodes_and_is_reached_from_here(
        backend: Backend, local_images: dict[str, float], capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    env = api.up(BLUEPRINT, directory=HELLO, backend=backend)
    t1 = time.monotonic()
    try:
        for key in ("WEB", "API"):
            url = env.outputs[key]
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                assert answer.read() == b"ok"
        nodes = {str(t["NodeID"]) for s in backend.api.services(filters={"label": [f"{L.RUN}={env.run_id}"]})  # type: ignore[attr-defined]
                 for t in backend.api.tasks(filters={"service": s["ID"]})}  # type: ignore[attr-defined]
        assert len(nodes) >= 2  # three services, each with the least used port: spread by the scheduler
        assert env.exec("api", ["sh", "-c", "getent hosts web | wc -l"]).output.strip() == "2"  # both replicas
    finally:
        env.down()
    t2 = time.monotonic()
    assert backend.list_resources({L.RUN: env.run_id}) == []
    with capsys.disabled():
        print(f"\nswarm-pair: swarm up {t1 - t0:.1f}s down {t2 - t1:.1f}s; single engine up "
              f"{local_images['up']:.1f}s down {local_images['down']:.1f}s")


def test_host_paths_are_refused_at_plan_time_naming_key_and_engine(backend: Backend, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    bp = {"name": "swarm-bind", "services": {"x": {"image": "debian:bookworm-slim", "command": ["sleep", "infinity"],
                                                   "volumes": ["./data:/data"]}}}
    with pytest.raises(BlueprintError, match=r"services\.x\.volumes\[0\]: engine swarm cannot mount paths"):
        api.up(bp, directory=tmp_path, backend=backend)
    assert backend.list_resources({L.BLUEPRINT: "swarm-bind"}) == []


def test_nothing_is_left_on_any_node(swarm: dict[str, str]) -> None:
    for pair in swarm["ENVKIT_SWARM_NODES"].split(","):
        _, _, where = pair.partition("=")
        node = connect("docker", {"DOCKER_HOST": where})
        try:
            assert node.list_resources({L.MANAGED: "true"}) == []
        finally:
            node.close()
