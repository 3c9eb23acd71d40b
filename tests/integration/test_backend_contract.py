"""The backend contract (tests/contract) against the Docker engine: the same tests the fake passes in
tests/unit/test_backend_contract.py. Every resource is labelled with a contract run and removed."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from contract.backend_contract import BackendContract, Harness, eventually

from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import BuildSpec, Capability, ExecResult
from envkit.backends.docker import DockerBackend

from .conftest import build_small_image

SHELL_IMAGE = "FROM debian:bookworm-slim\nLABEL io.envkit.test=contract\nCMD [\"sleep\", \"infinity\"]\n"


class DockerHarness(Harness):
    def __init__(self, backend: Backend, image: str, scratch: Path) -> None:
        self.backend = backend
        self.image = image
        self.scratch = scratch

    def program(self, name: str, prints: str = "", exit_code: int | None = None) -> tuple[str, ...]:
        end = f"exit {exit_code}" if exit_code is not None else "exec sleep infinity"
        return ("sh", "-c", f"printf %s {shlex.quote(prints)}; {end}")

    def answer(self, name: str, command: tuple[str, ...], result: ExecResult) -> None:
        pass  # the engine runs the command

    def failing_build(self, reason: str) -> Callable[[Callable[[str], None]], None]:
        folder = self.scratch / "broken"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(f"FROM debian:bookworm-slim\nRUN echo {reason} && exit 7\n", encoding="utf-8")
        spec = BuildSpec("envkit-test/broken:contract", folder, "Dockerfile", (), None, ())
        return lambda on_line: self.backend.build_image(spec, on_line)


@pytest.fixture(scope="module")
def shell_image(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_small_image(backend, tmp_path_factory.mktemp("shell"), SHELL_IMAGE)


class TestDockerBackend(BackendContract):
    @pytest.fixture
    def harness(self, backend: Backend, shell_image: str, tmp_path: Path) -> Harness:
        return DockerHarness(backend, shell_image, tmp_path)


def test_the_docker_backend_declares_every_capability(backend: Backend) -> None:
    assert isinstance(backend, DockerBackend)
    assert backend.name == "docker"
    assert backend.capabilities == frozenset(Capability)


def test_volume_helpers_carry_the_volumes_labels(backend: Backend, shell_image: str) -> None:
    # A helper left behind by a killed process is found (and removed) by its run's teardown.
    from envkit.backends.base import VolumeSpec
    from envkit.runs import teardown

    run = "contract-helper-labels"
    labels = ((L.MANAGED, "true"), (L.RUN, run))
    volume = backend.create_volume(VolumeSpec(f"envkit-{run}-data", labels))
    try:
        stream = backend.export_volume(volume)
        next(stream)  # the helper exists while the stream is read
        helpers = [r for r in backend.list_resources({L.RUN: run}) if r.kind == "container"]
        assert [r.labels[L.ROLE] for r in helpers] == ["helper"]
        stream.close()
        assert [r.kind for r in backend.list_resources({L.RUN: run})] == ["volume"]
    finally:
        teardown(backend, [run], missing_ok=True)


def test_a_gate_that_missed_its_signal_opens_by_the_file_written_behind_the_release(
        backend: Backend, shell_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The release is the signal; the file that covers a gate not listening yet is written behind it
    # (off the path to the gated service's dependants), and the executor's `settle` waits for that write.
    from envkit.backends.base import ContainerSpec
    from envkit.runs import teardown

    assert isinstance(backend, DockerBackend)
    run = "contract-gate-file"
    spec = ContainerSpec(f"envkit-{run}-svc", shell_image, ((L.MANAGED, "true"), (L.RUN, run)), (), network_mode="none",
                         command=("sh", "-c", "echo began; exec sleep infinity"))
    try:
        ident, gated = backend.create_gated_container(spec)
        assert gated
        backend.start_container(ident)
        signals: list[str] = []
        monkeypatch.setattr(backend.api, "kill", lambda container, signal: signals.append(signal))  # lost
        backend.release_container(ident)
        backend.settle()
        assert signals == ["SIGWINCH"]
        assert backend.copy_from(ident, "/.envkit-go")  # written by the time settle returns
        assert eventually(lambda: backend.logs(ident) == "began\n")  # the gate's nap found it
        backend.settle()  # nothing left behind it: returns at once
    finally:
        monkeypatch.undo()
        teardown(backend, [run], missing_ok=True)




def test_whether_an_image_has_a_shell_is_learnt_once_per_image_and_kept_on_file(
        backend: Backend, shell_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate needs /bin/sh: envkit checks the first container of an image, and keeps the answer
    # (an image id names fixed content), so that the next process does not copy /bin/sh out again.
    from dataclasses import replace

    from envkit.backends import _docker_caps as caps
    from envkit.backends.base import ContainerSpec
    from envkit.runs import teardown

    assert isinstance(backend, DockerBackend)
    no_shell = build_small_image(backend, tmp_path / "noshell", "FROM debian:bookworm-slim\nRUN rm /bin/sh\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = "contract-shell-file"
    labels = ((L.MANAGED, "true"), (L.RUN, run))
    checks: list[str] = []
    copy_from = backend.copy_from
    monkeypatch.setattr(backend, "copy_from", lambda ident, path: checks.append(path) or copy_from(ident, path))
    try:
        for n, (image, gated) in enumerate(((shell_image, True), (no_shell, False))):
            spec = ContainerSpec(f"envkit-{run}-a{n}", image, labels, (), network_mode="none", command=("sleep", "9"))
            monkeypatch.setattr(caps, "_SHELLS", {})  # a new process
            assert backend.create_gated_container(spec)[1] is gated
            assert checks == ["/bin/sh"]
            image_id = backend.api.inspect_image(image)["Id"].removeprefix("sha256:")
            assert (tmp_path / "cache" / "envkit" / "shells" / image_id).read_text() == ("sh" if gated else "none")
            monkeypatch.setattr(caps, "_SHELLS", {})  # the next process: the file answers, not a container
            assert backend.create_gated_container(replace(spec, name=f"envkit-{run}-b{n}"))[1] is gated
            assert checks == ["/bin/sh"]
            checks.clear()
    finally:
        monkeypatch.undo()
        teardown(backend, [run], missing_ok=True)
