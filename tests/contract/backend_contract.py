"""The backend contract: one set of tests that every ``Backend`` must pass, the in-memory fake
(tests/unit/test_backend_contract.py) as much as the Docker engine (tests/integration/test_backend_contract.py).

A backend enters through a ``Harness``: the backend itself, an image with a POSIX shell, and a way to
arrange what a container's process does. The Docker harness writes that into the command; the fake's
configures the fake the same way. The expectations are then the same for both: what is observed, by
kind of error, never by message text. A capability the backend does not declare must be refused with
``Unsupported``; one it declares must work.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import pytest

from envkit import labels as L
from envkit import retry
from envkit.backends.base import (
    Backend,
    Capability,
    ContainerSpec,
    ExecResult,
    MountSpec,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    PortKey,
    VolumeSpec,
)
from envkit.backends.fake import Program
from envkit.errors import Busy, Conflict, EngineError, NotFound, Unsupported
from envkit.runs import teardown

from .exec_contract import ExecStreamContract
from .restore_contract import RestoreContract

__all__ = ["BackendContract", "Harness", "read_tar", "tar_of"]


class Harness(ABC):
    """How a contract test sets a backend up."""

    backend: Backend
    image: str  # has /bin/sh

    @abstractmethod
    def program(self, name: str, prints: str = "", exit_code: int | None = None) -> tuple[str, ...]:
        """The command of container ``name``: it prints ``prints``, then exits with ``exit_code`` (or runs on)."""

    @abstractmethod
    def answer(self, name: str, command: tuple[str, ...], result: ExecResult) -> None:
        """``command`` run in container ``name`` gives ``result`` (a real engine just runs it)."""

    @abstractmethod
    def failing_build(self, reason: str) -> Callable[[Callable[[str], None]], None]:
        """A build of an image whose engine reason for failing contains ``reason``."""

    def play(self, name: str, program: Program) -> None:  # noqa: B027 - a real engine runs the command
        """For ``exec_stream`` in container ``name``: ``program`` does what the command does."""


def tar_of(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_tar(data: bytes) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            reader = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (m.mode & 0o777, reader.read() if reader else b"")
    return out


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class BackendContract(ExecStreamContract, RestoreContract):
    """Subclasses provide a ``harness`` fixture."""

    @pytest.fixture
    def run(self, harness: Harness) -> Iterator[str]:
        run_id = f"contract-{secrets.token_hex(3)}"
        yield run_id
        teardown(harness.backend, [run_id], missing_ok=True)

    @pytest.fixture
    def net(self, harness: Harness, run: str) -> str:
        name = f"envkit-{run}-net"
        harness.backend.create_network(NetworkSpec(name, self.labels(run)))
        return name

    @staticmethod
    def labels(run: str, **more: str) -> tuple[tuple[str, str], ...]:
        return ((L.MANAGED, "true"), (L.RUN, run), *sorted(more.items()))

    def container(self, h: Harness, run: str, net: str, suffix: str, prints: str = "", exit_code: int | None = None,
                  start: bool = True, **kw: object) -> str:
        name = f"envkit-{run}-{suffix}"
        spec = ContainerSpec(name=name, image=h.image, labels=self.labels(run, **{L.SERVICE: suffix}),
                             networks=(NetworkAttachment(net, (suffix,)),),
                             command=h.program(name, prints, exit_code), **kw)  # type: ignore[arg-type]
        ident = h.backend.create_container(spec)
        if start:
            h.backend.start_container(ident)
        return ident

    # -- core ---------------------------------------------------------------------------------------
    def test_create_start_inspect(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "web", start=False, ports=(PortBinding(PortKey(8080)),))
        created = b.inspect_container(ident)
        assert (created.status, created.exit_code, created.detailed) == ("created", None, True)
        assert created.name == f"envkit-{run}-web" and created.labels[L.RUN] == run
        b.start_container(ident)
        b.start_container(ident)  # starting a running container changes nothing
        state = b.inspect_container(ident)
        assert (state.status, state.running, state.exit_code) == ("running", True, None)
        endpoint = state.ports[PortKey(8080)]
        assert endpoint.host_ip == "127.0.0.1" and endpoint.port > 0 and list(state.ports) == [PortKey(8080)]
        # before its first start: no ports, or those it starts on (chosen at create; envkit.restore relies on it)
        assert created.ports in ({}, state.ports), (created.ports, state.ports)
        assert state.addresses[net]
        assert state.started_at and state.oom_killed is False

    def test_a_stopped_and_started_container_keeps_its_host_ports(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ports = (PortBinding(PortKey(8080)), PortBinding(PortKey(9090)), PortBinding(PortKey(5353, "udp")))
        ident = self.container(harness, run, net, "web", ports=ports)
        first = dict(b.inspect_container(ident).ports)
        assert set(first) == {p.container for p in ports} and len({e.port for e in first.values()}) == 3
        if self.refused(b, Capability.SIGNAL, lambda: b.stop_container(ident, 0)):
            return
        b.stop_container(ident, 0)
        b.start_container(ident)
        assert dict(b.inspect_container(ident).ports) == first
        b.kill_container(ident, "SIGKILL")
        b.wait_container(ident, 30)
        b.start_container(ident)
        assert dict(b.inspect_container(ident).ports) == first

    def test_wait_gives_the_exit_code(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        job = self.container(harness, run, net, "job", exit_code=3)
        service = self.container(harness, run, net, "svc")
        assert b.wait_container(job, 30) == 3
        state = b.inspect_container(job)
        assert (state.status, state.exit_code, state.running, dict(state.ports)) == ("exited", 3, False, {})
        assert b.wait_container(service, 0.2) is None

    def test_exec(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        command = ("sh", "-c", "echo hi; exit 3")
        ident = self.container(harness, run, net, "svc")
        harness.answer(f"envkit-{run}-svc", command, ExecResult(3, "hi\n"))
        assert b.exec(ident, command) == ExecResult(3, "hi\n")
        idle = self.container(harness, run, net, "idle", start=False)
        with pytest.raises(Conflict):
            b.exec(idle, ("true",))
        with pytest.raises(NotFound):
            b.exec(f"envkit-{run}-nope", ("true",))

    def test_logs(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "job", prints="one\ntwo\n", exit_code=0)
        assert b.wait_container(ident, 30) == 0
        assert b.logs(ident) == "one\ntwo\n"
        assert b.logs(ident, tail=1) == "two\n"
        assert "".join(b.follow_logs(ident)) == "one\ntwo\n"
        idle = self.container(harness, run, net, "idle", prints="never\n", start=False)
        assert b.logs(idle) == ""  # nothing before its process begins

    def test_log_lines_carry_their_times(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        before = time.time() - 1
        ident = self.container(harness, run, net, "job", prints="one\ntwo\nthree\n", exit_code=0)
        assert b.wait_container(ident, 30) == 0
        lines = b.log_lines(ident)
        assert [line.text for line in lines] == ["one", "two", "three"]
        times = [line.at for line in lines]
        assert times == sorted(times) and all(t.tzinfo is not None for t in times)
        assert before <= times[0].timestamp() <= time.time() + 1
        assert [line.text for line in b.log_lines(ident, tail=1)] == ["three"]
        assert b.log_lines(ident, since=times[-1].timestamp() + 5) == []
        assert [line.text for line in b.log_lines(ident, until=before)] == []
        assert [line.text for line in b.follow_log_lines(ident, tail=2)] == ["two", "three"]
        idle = self.container(harness, run, net, "idle", prints="never\n", start=False)
        assert b.log_lines(idle) == []
        with pytest.raises(NotFound):
            b.log_lines(f"envkit-{run}-nope")

    def test_images_are_listed_by_label_and_removed_unless_in_use(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        [image] = [i for i in b.list_images({}) if harness.image in i.tags]
        assert image.id and image.created.tzinfo is not None and image.size > 0
        assert not [i for i in b.list_images({L.RUN: f"{run}-none"})]
        tag = f"envkit-contract/removable:{run}"
        if b.supports(Capability.EXPORT_FILESYSTEM):  # a second image to remove: a copy of a container's files
            ident = self.container(harness, run, net, "svc", start=False)
            b.export_filesystem(ident, tag, {L.RUN: run})
            [made] = b.list_images({L.RUN: run})
            assert tag in made.tags and made.containers == 0
            spec = ContainerSpec(f"envkit-{run}-user", tag, self.labels(run), (NetworkAttachment(net),),
                                 command=harness.program(f"envkit-{run}-user"))
            user = b.create_container(spec)
            [made] = b.list_images({L.RUN: run})
            assert made.containers == 1  # a created container counts, running or not
            with pytest.raises(Conflict):
                b.remove_image(tag)
            b.remove_container(user, 0)
            b.remove_image(tag)
            assert not b.image_exists(tag) and b.list_images({L.RUN: run}) == []
        b.remove_image(tag)  # gone already: success, on every engine

    def test_labels_select_and_listings_are_not_detailed(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        job = self.container(harness, run, net, "job", exit_code=4)
        self.container(harness, run, net, "svc")
        b.create_volume(VolumeSpec(f"envkit-{run}-data", self.labels(run)))
        b.wait_container(job, 30)
        names = sorted(r.name for r in b.list_resources({L.RUN: run}))
        assert names == [f"envkit-{run}-{x}" for x in ("data", "job", "net", "svc")]
        by_key = sorted(r.name for r in b.list_resources({L.RUN: run, L.SERVICE: None}))  # the key alone
        assert by_key == [f"envkit-{run}-job", f"envkit-{run}-svc"]
        assert b.list_resources({L.RUN: f"{run}-other"}) == []
        [listed] = b.list_containers({L.RUN: run, L.SERVICE: "job"})
        assert (listed.status, listed.detailed, listed.exit_code, listed.health) == ("exited", False, None, None)
        [running] = b.list_containers({L.RUN: run, L.SERVICE: "svc"})
        assert running.running and running.addresses[net]

    def test_removing_what_is_gone_succeeds(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        volume = b.create_volume(VolumeSpec(f"envkit-{run}-data", self.labels(run)))
        assert b.create_volume(VolumeSpec(volume, self.labels(run))) == volume  # an existing volume is returned
        ident = self.container(harness, run, net, "svc", mounts=(MountSpec("volume", volume, "/data", False),))
        network = next(r.id for r in b.list_resources({L.RUN: run}) if r.kind == "network")
        for _ in range(2):
            b.remove_container(ident, 0)
            b.remove_network(network)
            b.remove_volume(volume)
        assert b.list_resources({L.RUN: run}) == []
        with pytest.raises(NotFound):
            b.inspect_container(ident)
        with pytest.raises(NotFound):
            b.wait_container(ident, 0.1)

    def test_errors_come_by_kind(self, harness: Harness, run: str, net: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        name = f"envkit-{run}-svc"
        with pytest.raises(Conflict):
            self.container(harness, run, net, "svc")
        with pytest.raises(Conflict):
            b.create_network(NetworkSpec(net, self.labels(run)))
        with pytest.raises(NotFound):
            b.create_container(ContainerSpec(f"{name}-x", "envkit-contract/none:0", self.labels(run),
                                             (NetworkAttachment(net),)))
        with pytest.raises(NotFound):  # Docker finds out at start, the fake at create: either way, NotFound
            b.start_container(b.create_container(ContainerSpec(f"{name}-y", harness.image, self.labels(run),
                                                               (NetworkAttachment(f"{net}-none"),))))
        with pytest.raises(NotFound):
            b.inspect_container(f"{name}-z")
        monkeypatch.setattr(retry, "ATTEMPTS", 2)  # Busy is retried: briefly, here
        network = next(r.id for r in b.list_resources({L.RUN: run}) if r.kind == "network")
        with pytest.raises(Busy):
            b.remove_network(network)
        assert b.inspect_container(ident).running

    def test_a_failed_build_gives_the_engines_reason_alone(self, harness: Harness) -> None:
        lines: list[str] = []
        with pytest.raises(EngineError) as caught:
            harness.failing_build("contract-build-fails")(lines.append)
        assert "contract-build-fails" in str(caught.value)
        assert not str(caught.value).startswith("build image")
        assert lines

    # -- capabilities -------------------------------------------------------------------------------
    def refused(self, b: Backend, capability: Capability, call: Callable[[], object]) -> bool:
        if b.supports(capability):
            return False
        with pytest.raises(Unsupported, match=f"engine {b.name} cannot {capability.value}"):
            call()
        return True

    def test_gate(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        name = f"envkit-{run}-gated"
        spec = ContainerSpec(name, harness.image, self.labels(run), (NetworkAttachment(net),),
                             command=harness.program(name, "released\n"))
        if self.refused(b, Capability.GATE, lambda: b.create_gated_container(spec)):
            return
        ident, gated = b.create_gated_container(spec)
        assert gated
        b.start_container(ident)
        time.sleep(0.3)
        assert b.inspect_container(ident).running and b.logs(ident) == ""
        b.release_container(ident)
        assert eventually(lambda: b.logs(ident) == "released\n")
        job = self.container(harness, run, net, "job", exit_code=0)
        b.wait_container(job, 30)
        with pytest.raises(Conflict):
            b.release_container(job)

    def test_copy_files(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        # Seeds copy into running containers (on Swarm a container exists only once its task runs;
        # copying into a created one is covered by test_export_filesystem, on the engines that export).
        ident = self.container(harness, run, net, "svc")
        archive = tar_of({"a.txt": b"hello", "sub/b.txt": b"bee"}, mode=0o640)
        if self.refused(b, Capability.COPY_FILES, lambda: b.copy_into(ident, "/tmp", archive)):
            return
        b.copy_into(ident, "/tmp", archive)
        assert read_tar(b.copy_from(ident, "/tmp/a.txt")) == {"a.txt": (0o640, b"hello")}
        assert read_tar(b.copy_from(ident, "/tmp/sub"))["sub/b.txt"] == (0o640, b"bee")
        with pytest.raises(NotFound):
            b.copy_into(ident, "/nonexistent-dir", archive)
        with pytest.raises(NotFound):
            b.copy_from(ident, "/tmp/missing.txt")

    def test_export_filesystem(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc", start=False)
        tag = f"envkit-contract/snapshot:{run}"
        if self.refused(b, Capability.EXPORT_FILESYSTEM, lambda: b.export_filesystem(ident, tag, {})):
            return
        b.copy_into(ident, "/tmp", tar_of({"kept.txt": b"state"}))
        try:
            assert b.export_filesystem(ident, tag, {L.RUN: run})
            assert b.image_exists(tag)
            spec = ContainerSpec(f"envkit-{run}-copy", tag, self.labels(run), (NetworkAttachment(net),),
                                 command=harness.program(f"envkit-{run}-copy"))
            copy = b.create_container(spec)
            assert read_tar(b.copy_from(copy, "/tmp/kept.txt"))["kept.txt"][1] == b"state"
            with pytest.raises(Conflict):
                b.remove_image(tag)  # a container uses it
            b.remove_container(copy, 0)
        finally:
            b.remove_image(tag)
        b.remove_image(tag)
        assert not b.image_exists(tag)

    def test_export_volume(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        volume = b.create_volume(VolumeSpec(f"envkit-{run}-data", self.labels(run)))
        if self.refused(b, Capability.EXPORT_VOLUME, lambda: b.import_volume(volume, [b""])):
            return
        b.import_volume(volume, [tar_of({"old.txt": b"old"})])
        b.import_volume(volume, [tar_of({"a.txt": b"one", "sub/b.txt": b"two"})])  # replaces the content
        exported = read_tar(b"".join(b.export_volume(volume)))
        assert {k: v[1] for k, v in exported.items() if v[1]} == {"./a.txt": b"one", "./sub/b.txt": b"two"}
        assert "." in exported
        ident = self.container(harness, run, net, "svc", start=False,
                               mounts=(MountSpec("volume", volume, "/data", False),))
        if b.supports(Capability.COPY_FILES):
            assert read_tar(b.copy_from(ident, "/data/a.txt"))["a.txt"][1] == b"one"
        with pytest.raises(NotFound):
            b"".join(b.export_volume(f"{volume}-none"))
        # The helpers are gone: only what the test made is left.
        assert sorted(r.name for r in b.list_resources({L.RUN: run})) == [f"envkit-{run}-{x}"
                                                                           for x in ("data", "net", "svc")]

    def test_image_id(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        if self.refused(b, Capability.EXPORT_FILESYSTEM, lambda: b.image_id(harness.image)):
            return
        ident = b.image_id(harness.image)
        assert ident and ident == b.image_id(harness.image)
        assert b.image_id(f"envkit-contract/none:{run}") is None

    def test_copy_volume(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        source = b.create_volume(VolumeSpec(f"envkit-{run}-from", self.labels(run)))
        target = b.create_volume(VolumeSpec(f"envkit-{run}-to", self.labels(run)))
        if self.refused(b, Capability.EXPORT_VOLUME, lambda: b.copy_volume(source, target)):
            return
        b.import_volume(source, [tar_of({"a.txt": b"one", "sub/b.txt": b"two"}, mode=0o600)])
        b.import_volume(target, [tar_of({"stale.txt": b"old"})])
        b.copy_volume(source, target)  # replaces what the target held
        copied = read_tar(b"".join(b.export_volume(target)))
        assert {k: v for k, v in copied.items() if v[1]} == {"./a.txt": (0o600, b"one"), "./sub/b.txt": (0o600, b"two")}
        assert read_tar(b"".join(b.export_volume(source)))["./a.txt"] == (0o600, b"one")  # the source is kept
        with pytest.raises(NotFound):
            b.copy_volume(f"{source}-none", target)
        assert sorted(r.name for r in b.list_resources({L.RUN: run})) == [f"envkit-{run}-{x}"
                                                                           for x in ("from", "net", "to")]

    def test_mounts_are_reported(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        volume = b.create_volume(VolumeSpec(f"envkit-{run}-data", self.labels(run)))
        ident = self.container(harness, run, net, "svc", start=False,
                               mounts=(MountSpec("volume", volume, "/data", True),))
        assert MountSpec("volume", volume, "/data", True) in b.inspect_container(ident).mounts

    def test_signal(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        if self.refused(b, Capability.SIGNAL, lambda: b.kill_container(ident)):
            return
        b.kill_container(ident, "SIGKILL")
        assert b.wait_container(ident, 30) == 137
        with pytest.raises(Conflict):
            b.kill_container(ident)
        other = self.container(harness, run, net, "other")
        b.stop_container(other, 1)
        state = b.inspect_container(other)  # stopped, not removed
        assert state.status == "exited" and state.exit_code is not None

    def test_pause(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        if self.refused(b, Capability.PAUSE, lambda: b.pause_container(ident)):
            return
        b.pause_container(ident)
        assert b.inspect_container(ident).status == "paused"
        with pytest.raises(Conflict):
            b.pause_container(ident)
        b.unpause_container(ident)
        assert b.inspect_container(ident).running
        with pytest.raises(Conflict):
            b.unpause_container(ident)

    def test_network_connect(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        ident = self.container(harness, run, net, "svc")
        second = f"envkit-{run}-second"
        b.create_network(NetworkSpec(second, self.labels(run), internal=True))
        if self.refused(b, Capability.NETWORK_CONNECT, lambda: b.connect_network(ident, second)):
            return
        b.connect_network(ident, second, ("alias",))
        assert set(b.inspect_container(ident).addresses) == {net, second}
        with pytest.raises(Conflict):
            b.connect_network(ident, second)
        b.disconnect_network(ident, second)
        assert set(b.inspect_container(ident).addresses) == {net}
        with pytest.raises(Conflict):
            b.disconnect_network(ident, second)
        with pytest.raises(NotFound):
            b.connect_network(ident, f"{second}-none")
