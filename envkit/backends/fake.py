"""An in-memory engine for unit tests: the planner, executor and teardown run against it without Docker.

It behaves like a small, obedient Docker, and the backend contract suite (tests/contract) holds it to
the same expectations as the real engine: containers need their image and networks to exist (else
``NotFound``), names are unique (``Conflict``), start makes them ``running`` (or ``exited`` with a
chosen code, so jobs complete or fail), networks and volumes in use cannot be removed (``Busy``),
removals of what is already gone succeed, and label filters match like
``docker ps --filter label=key[=value]``. Files copied into containers and volumes are kept, so the
optional capabilities (copy, export, import) round-trip. Every call is recorded, in order, in
``calls`` as ``(method, name)`` — the resource's name where one is known — so tests can assert ordering.

Behaviour is configured through plain attributes, per container name or per service name
(the ``io.envkit.service`` label)::

    fake = FakeBackend(images={"postgres:16"})
    fake.exit_codes["migrate"] = 0          # the migrate job exits 0 as soon as it starts
    fake.build_failures["envkit/shop-app:1"] = "COPY failed"
    fake.log_text["api"] = "listening on :8080\\n"   # printed once its process has begun
    fake.emit(container_id, "GET /health 200")     # a line printed now (not an engine call)
    FakeBackend(capabilities={Capability.GATE})     # an engine that can do less: refusals
    fake.exec_programs["db"] = psql_like   # what `exec_stream` runs: a Python stand-in (see Program)
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import BinaryIO

from envkit.backends import _tar, endpoints
from envkit.backends._fake_core import SIGNALS, Container, FakeEngine, matches
from envkit.backends.base import Capability, ExecResult, ExecSession, NetworkAttachment
from envkit.errors import Busy, Conflict, EngineError, NotFound

__all__ = ["FakeBackend", "Program", "matches"]

#: a command of ``exec_stream`` played by Python: (command, stdin, stdout, stderr, tty) -> exit code. It
#: reads stdin (empty without one) and writes its output as the real command would, at its own pace.
Program = Callable[[tuple[str, ...], BinaryIO, BinaryIO, BinaryIO, bool], int]


def _answer(result: ExecResult) -> Program:
    """The default program: read stdin to its end, print ``result``'s output, exit with its code."""
    def program(command: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
        stdin.read()
        stdout.write(result.output.encode())
        stdout.flush()
        return result.exit_code

    return program


class _Session(ExecSession):
    def __init__(self, program: Program, command: tuple[str, ...], stdin: int | None, stdout: BinaryIO,
                 stderr: BinaryIO, tty: bool, sizes: list[tuple[int, int]]) -> None:
        self.program, self.command, self.stdin, self.stdout, self.stderr, self.tty, self.sizes = (
            program, command, stdin, stdout, stdout if tty else stderr, tty, sizes)

    def resize(self, rows: int, columns: int) -> None:
        if self.tty:
            self.sizes.append((rows, columns))

    def wait(self) -> int:
        reader: BinaryIO = (os.fdopen(os.dup(self.stdin), "rb", buffering=0) if self.stdin is not None
                            else io.BytesIO())
        with reader:
            return self.program(self.command, reader, self.stdout, self.stderr, self.tty)


class FakeBackend(FakeEngine):
    """The fake engine with every optional capability (or those given to ``capabilities=``)."""

    def __init__(self, images: Iterable[str] = (), capabilities: Iterable[Capability] | None = None) -> None:
        super().__init__(images, capabilities)
        self.exec_programs: dict[str, Program] = {}  # name or service -> what exec_stream runs
        self.resizes: list[tuple[int, int]] = []  # terminal sizes sent to exec_stream sessions
        # network name -> endpoints with no container behind them (dockerd 20.10 leaves such), which keep the
        # network "has active endpoints" until forced off; those also in stuck_endpoints cannot be forced off
        self.stale_endpoints: dict[str, set[str]] = {}
        self.stuck_endpoints: set[str] = set()

    # -- network removal, stale endpoints included: the Docker backend's way (envkit.backends.endpoints) ----
    def remove_network(self, network_id: str) -> None:
        network = self.networks.get(network_id)
        if network is None:
            self._record("remove_network", network_id)
            return
        name = network.spec.name
        endpoints.remove_network(name, lambda: self._remove_once(network_id), lambda: self._endpoints(name),
                                 lambda endpoint: self._force_off(name, endpoint), sleep=lambda s: None)

    def _remove_once(self, network_id: str) -> None:
        with self._changed:
            stale = self.stale_endpoints.get(self.networks[network_id].spec.name) if network_id in self.networks else None
            if stale:
                self._record("remove_network", network_id)
                raise Busy(f"network {self.networks[network_id].spec.name} has active endpoints")
        FakeEngine.remove_network(self, network_id)

    def _endpoints(self, network: str) -> list[tuple[str, bool]]:
        with self._changed:
            live = [(c.spec.name, True) for c in self.containers.values() if any(a.network == network for a in c.networks)]
            return live + [(e, False) for e in sorted(self.stale_endpoints.get(network, ()))]

    def _force_off(self, network: str, endpoint: str) -> None:
        self._record("force_off_network", f"{network}/{endpoint}")
        with self._changed:
            if endpoint not in self.stuck_endpoints:
                self.stale_endpoints.get(network, set()).discard(endpoint)

    # -- COPY_FILES, EXPORT_FILESYSTEM, EXPORT_VOLUME -------------------------------------------------
    def _store(self, c: Container, path: str) -> tuple[_tar.Files, str]:
        """Where ``path`` of container ``c`` lives: a volume mounted over it, or the container's own files."""
        for m in sorted(c.spec.mounts, key=lambda m: -len(m.target)):
            if m.type == "volume" and _tar.under(path, m.target) and m.source in self.volumes:
                return self.volumes[m.source].files, _tar.relative(path, m.target)
        return c.files, path

    def copy_into(self, container_id: str, directory: str, archive: bytes) -> None:
        self.require(Capability.COPY_FILES)
        self._record("copy_into", container_id)
        with self._changed:
            c = self._container(container_id)
            files, root = self._store(c, directory)
            mounted = any(m.target == directory for m in c.spec.mounts)
            if not (mounted or _tar.is_dir(files, root) or directory in ("/", "/tmp")):
                raise NotFound(f"could not find the file {directory} in container {c.spec.name}")
            _tar.unpack(files, root, archive)

    def copy_from(self, container_id: str, path: str) -> bytes:
        self.require(Capability.COPY_FILES)
        self._record("copy_from", container_id)
        with self._changed:
            c = self._container(container_id)
            files, key = self._store(c, path)
            if not _tar.exists(files, key):
                raise NotFound(f"could not find the file {path} in container {c.spec.name}")
            return _tar.pack(files, key)

    def export_filesystem(self, container_id: str, tag: str, labels: Mapping[str, str]) -> str:
        self.require(Capability.EXPORT_FILESYSTEM)
        self._record("export_filesystem", container_id)
        with self._changed:
            c = self._container(container_id)
            self.images.add(tag)
            self.image_files[tag] = dict(c.files)  # its own files, not its volumes
            self.image_labels[tag] = {**c.labels, **labels}  # like Docker: the container's labels, and these
            self.image_created[tag] = datetime.now(UTC)
        return f"sha256:{tag}"

    def rename_container(self, container_id: str, name: str) -> None:
        self.require(Capability.EXPORT_FILESYSTEM)
        self._record("rename_container", name)
        with self._changed:
            c = self._container(container_id)
            if any(o.spec.name == name for o in self.containers.values() if o is not c):
                raise Conflict(f'the container name "{name}" is already in use')
            c.spec = replace(c.spec, name=name)

    def image_id(self, tag: str) -> str | None:
        self.require(Capability.EXPORT_FILESYSTEM)
        self._record("image_id", tag)
        with self._changed:
            if tag not in self.images:
                return None
            return self.image_ids.get(tag) or "sha256:" + hashlib.sha256(tag.encode()).hexdigest()

    def export_volume(self, name: str) -> Iterator[bytes]:
        self.require(Capability.EXPORT_VOLUME)
        self._record("export_volume", name)
        with self._changed:
            data = _tar.pack(self._volume(name).files, ".")
        yield data

    def import_volume(self, name: str, archive: Iterable[bytes]) -> None:
        self.require(Capability.EXPORT_VOLUME)
        self._record("import_volume", name)
        data = b"".join(archive)
        with self._changed:
            volume = self._volume(name)
            volume.files.clear()
            _tar.unpack(volume.files, ".", data)

    # -- INTERACTIVE_EXEC -------------------------------------------------------------------------------
    def exec_stream(self, container_id: str, command: tuple[str, ...], *, stdin: int | None, stdout: BinaryIO,
                    stderr: BinaryIO, tty: bool = False, user: str | None = None) -> ExecSession:
        self.require(Capability.INTERACTIVE_EXEC)
        self._record("exec_stream", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status != "running":
                raise Conflict(f"container {c.spec.name} is not running")
            program = self._setting(self.exec_programs, c) or _answer(self._setting(self.exec_results, c)
                                                                      or ExecResult(0, ""))
        return _Session(program, command, stdin, stdout, stderr, tty, self.resizes)

    # -- SIGNAL, PAUSE, NETWORK_CONNECT -----------------------------------------------------------------
    def _live(self, container_id: str) -> Container:
        c = self._container(container_id)
        if c.status not in ("running", "paused"):
            raise Conflict(f"container {c.spec.name} is not running")
        return c

    def stop_container(self, container_id: str, grace: float) -> None:
        self.require(Capability.SIGNAL)
        self._record("stop_container", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status in ("running", "paused"):
                self._exit(c, 128 + SIGNALS["SIGTERM"])

    def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        self.require(Capability.SIGNAL)
        self._record("kill_container", container_id)
        with self._changed:
            c = self._live(container_id)
            number = SIGNALS.get(signal.upper() if signal.upper().startswith("SIG") else f"SIG{signal.upper()}")
            if number is None:
                raise EngineError(f"invalid signal: {signal}")
            if number in (SIGNALS["SIGKILL"], SIGNALS["SIGTERM"], SIGNALS["SIGINT"]):
                self._exit(c, 128 + number)

    def pause_container(self, container_id: str) -> None:
        self.require(Capability.PAUSE)
        self._record("pause_container", container_id)
        with self._changed:
            c = self._live(container_id)
            if c.status == "paused":
                raise Conflict(f"container {c.spec.name} is already paused")
            c.status = "paused"

    def unpause_container(self, container_id: str) -> None:
        self.require(Capability.PAUSE)
        self._record("unpause_container", container_id)
        with self._changed:
            c = self._container(container_id)
            if c.status != "paused":
                raise Conflict(f"container {c.spec.name} is not paused")
            c.status = "running"

    def connect_network(self, container_id: str, network: str, aliases: tuple[str, ...] = ()) -> None:
        self.require(Capability.NETWORK_CONNECT)
        self._record("connect_network", container_id)
        with self._changed:
            c = self._container(container_id)
            name = self._network(network).spec.name
            if any(a.network == name for a in c.networks):
                raise Conflict(f"container {c.spec.name} is already connected to network {name}")
            c.networks.append(NetworkAttachment(name, aliases))

    def disconnect_network(self, container_id: str, network: str) -> None:
        self.require(Capability.NETWORK_CONNECT)
        self._record("disconnect_network", container_id)
        with self._changed:
            c = self._container(container_id)
            name = self._network(network).spec.name
            if not any(a.network == name for a in c.networks):
                raise Conflict(f"container {c.spec.name} is not connected to network {name}")
            c.networks = [a for a in c.networks if a.network != name]
