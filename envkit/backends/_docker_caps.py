"""The Docker backend's optional capabilities (see ``Capability``): the gate, copying files, volumes'
content, signals, pause and network (dis)connection; and network removal (stale endpoints forced off).
A mixin of ``DockerBackend``, kept apart to keep each file readable; it reaches the engine only through
the backend's own client and call wrappers, and does not import ``docker`` itself."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from envkit import labels as L
from envkit.backends import _docker_wire as wire
from envkit.backends import endpoints
from envkit.backends.base import Backend, ContainerSpec, NetworkAttachment, VolumeSpec
from envkit.errors import Busy, EngineError, EnvkitError, NotFound

__all__ = ["COW_PARTS", "HELPER_IMAGE", "DockerCapabilities"]

#: the image of the short-lived helper containers that read and write volumes (it must be on the engine)
HELPER_IMAGE = "debian:bookworm-slim"
#: A volume filled from a snapshot is, where the engine can mount it, an overlay (the kernel's overlayfs,
#: through the local driver's mount options) of the snapshot's data volume: made in milliseconds
#: whatever the size of the data, its writes going to a volume of the run. Its parts, named after it:
#: the upper and work directories (two volumes of the run), and a container that is never started, the
#: holder, which mounts the overlay, both directories and the snapshot's data read-only. The holder makes
#: the engine count every part as in use, so `docker volume prune` and `rm` leave them (and the
#: snapshot's data) alone while the run lives; it also has the engine mount the overlay once when it is
#: made, which is the check that this engine can (else the data is copied). Its labels are the
#: volume's, so the run's teardown removes every part.
COW_PARTS = ("-cow-upper", "-cow-work")
COW_HOLDER = "-cow"


def _mount(target: str, volume: str, read_only: bool) -> dict[str, Any]:
    """A volume mount in the engine's own terms (what ``docker.types.Mount`` builds)."""
    return {"Target": target, "Source": volume, "Type": "volume", "ReadOnly": read_only}


T = TypeVar("T")


#: image id -> whether it has /bin/sh (the gate's shell); an image id names fixed content
_SHELLS: dict[str, bool] = {}


def _shells_dir() -> Path:
    """Where what ``_SHELLS`` learnt is kept for the next process: one file per image id, whose
    content never changes (so neither does the answer), under the user's cache (as the sweep's)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path(os.environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "envkit" / "shells"


def _shell_file(image: str) -> Path | None:
    digest = image.removeprefix("sha256:")
    return _shells_dir() / digest if digest and digest.isalnum() else None


def _shell_on_file(image: str) -> bool | None:
    path = _shell_file(image)
    try:
        text = path.read_text(encoding="ascii").strip() if path is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    return {"sh": True, "none": False}.get(text)


def _shell_to_file(image: str, has_shell: bool | None) -> None:
    path = _shell_file(image)
    if path is None or has_shell is None:
        return
    with contextlib.suppress(OSError):  # a cache: a read-only home costs the check again, nothing more
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text("sh" if has_shell else "none", encoding="ascii")
        tmp.replace(path)
#: the gates' fallback files still being written (``release_container``), per backend; and how long
#: ``settle`` waits for them at most (a write stuck on a wedged engine must not hang the run)
_BEHIND_LOCK = threading.Lock()
SETTLE_TIMEOUT = 30.0


class DockerCapabilities:
    """Mixed into ``DockerBackend``, which provides what is declared here."""

    if TYPE_CHECKING:
        api: Any
        _behind: list[tuple[str, threading.Thread]]

        def _call(self, what: str) -> AbstractContextManager[None]: ...
        def _once(self, what: str, fn: Callable[[], T]) -> T: ...
        def _retried(self, what: str, fn: Callable[[], T]) -> T: ...
        def create_container(self, spec: ContainerSpec) -> str: ...
        def remove_container(self, container_id: str, grace: float) -> None: ...
        def remove_volume(self, name: str) -> None: ...
        def _gone_ok(self, what: str, fn: Callable[[], object]) -> None: ...

    # -- GATE -------------------------------------------------------------------------------------
    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        info = self._retried(f"inspect image {spec.image}", lambda: self.api.inspect_image(spec.image))
        argv = wire.gated_argv(spec, info.get("Config") or {})
        if argv is None:
            return self.create_container(spec), False
        gated = replace(spec, entrypoint=("/bin/sh", "-c", wire.GATE_SCRIPT, "envkit-gate"), command=argv)
        image = str(info.get("Id") or spec.image)
        if image not in _SHELLS and (known := _shell_on_file(image)) is not None:
            _SHELLS[image] = known
        if _SHELLS.get(image) is False:
            return self.create_container(spec), False
        container_id = self.create_container(gated)
        if image not in _SHELLS:  # once per image (then on file): the api, its worker and its job share one
            try:
                self.copy_from(container_id, "/bin/sh")
                _SHELLS[image] = True
            except NotFound:
                if self._exists(container_id):  # else removed under the check: nothing learnt of the image
                    _SHELLS[image] = False
                self.remove_container(container_id, 0)  # an image without a shell: no gate, a plain start later
                return self.create_container(spec), False
            finally:
                _shell_to_file(image, _SHELLS.get(image))
        return container_id, True

    def release_container(self, container_id: str) -> None:
        with self._call(f"release container {container_id[:12]}"):
            self.api.kill(container_id, signal="SIGWINCH")  # the release (see GATE_SCRIPT) ...
        # ... and, for a gate not listening yet, the file, written behind the release: a gate that got
        # the signal (nearly always) has begun its service's process already, and the file's copy costs
        # the engine 40-130 ms that would otherwise sit on the path to every gated dependant. A gate that
        # missed the signal finds the file within its 0.25 s nap; ``settle`` (at the end of the
        # executor's run) waits for every such write, so no run is handed over with a gate still shut.
        # The file is also what opens the gate when the container starts again (the gate is its
        # entrypoint: after a snapshot's stop, envkit restart, a healed stop fault, a restart policy),
        # so a stop or a kill of the container waits for its write first, and the write is retried.
        def write() -> None:
            with contextlib.suppress(EnvkitError):  # gone or exited since: nothing is waiting any more
                self._retried(f"release file of container {container_id[:12]}",
                              lambda: self.api.put_archive(container_id, "/", wire.GO_TAR))
        thread = threading.Thread(target=write, name=f"envkit-release-{container_id[:12]}", daemon=True)
        with _BEHIND_LOCK:
            self._behind = [(c, t) for c, t in self._behind if t.is_alive()] + [(container_id, thread)]
        thread.start()

    def _written(self, container_id: str) -> None:
        """Wait (SETTLE_TIMEOUT at most) for the file behind ``container_id``'s release, if still under way."""
        with _BEHIND_LOCK:
            behind = [t for c, t in self._behind if c == container_id]
        for thread in behind:
            thread.join(SETTLE_TIMEOUT)

    def settle(self) -> None:
        # Every write still under way is waited for, not only this executor's, and none is taken off the
        # list: executors that share the backend (a reset, a live restart, seeds) settle at once, and one
        # that took the others' writes away would let them hand their runs over with a gate still shut.
        # SETTLE_TIMEOUT bounds the whole wait, not each write (a wedged engine holds every one).
        with _BEHIND_LOCK:
            self._behind = [(c, t) for c, t in self._behind if t.is_alive()]
            behind = [t for _, t in self._behind]
        until = time.monotonic() + SETTLE_TIMEOUT
        for thread in behind:
            thread.join(max(0.0, until - time.monotonic()))

    # -- COPY_FILES, EXPORT_FILESYSTEM, EXPORT_VOLUME ---------------------------------------------
    def copy_into(self, container_id: str, directory: str, archive: bytes) -> None:
        self._once(f"copy into {directory} of container {container_id[:12]}",
                   lambda: self.api.put_archive(container_id, directory, archive))

    def copy_from(self, container_id: str, path: str) -> bytes:
        def read() -> bytes:
            stream, _ = self.api.get_archive(container_id, path)
            return b"".join(stream)

        return self._retried(f"copy {path} from container {container_id[:12]}", read)

    def image_id(self, tag: str) -> str | None:
        try:
            return str(self._retried(f"inspect image {tag}", lambda: self.api.inspect_image(tag))["Id"])
        except NotFound:
            return None

    @contextmanager
    def _helper(self, volume: str, command: list[str] | None, read_only: bool) -> Iterator[str]:
        """A short-lived container of HELPER_IMAGE with ``volume`` at /v, labelled like the volume (so
        a teardown of its run finds it) with the role ``helper``; removed on the way out."""
        info = self._retried(f"inspect volume {volume}", lambda: self.api.inspect_volume(volume))
        labels = {**(info.get("Labels") or {}), L.ROLE: "helper"}
        config = self.api.create_host_config(mounts=[_mount("/v", volume, read_only)], network_mode="none")
        made = self._once(f"create a helper for volume {volume}", lambda: self.api.create_container(
            HELPER_IMAGE, command=command, labels=labels, host_config=config, network_disabled=True))
        try:
            yield str(made["Id"])
        finally:
            self.remove_container(str(made["Id"]), 0)

    def export_volume(self, name: str) -> Iterator[bytes]:
        with self._helper(name, ["true"], read_only=True) as helper, \
                self._call(f"export volume {name}"):
            stream, _ = self.api.get_archive(helper, "/v/.")  # the engine mounts volumes for this: no start
            yield from stream

    def import_volume(self, name: str, archive: Iterable[bytes]) -> None:
        data = b"".join(archive)
        with self._helper(name, ["sh", "-c", "find /v -mindepth 1 -delete"], read_only=False) as helper:
            self._once(f"empty volume {name}", lambda: self.api.start(helper))
            code = self._once(f"empty volume {name}", lambda: self.api.wait(helper, timeout=60)).get("StatusCode")
            if code != 0:
                raise EngineError(f"import volume {name}: emptying it exited with code {code}")
            self._once(f"import volume {name}", lambda: self.api.put_archive(helper, "/v", data))

    def copy_volume(self, source: str, target: str) -> None:
        """In place: one helper mounts both volumes (the data never leaves the engine's host)."""
        info = self._retried(f"inspect volume {target}", lambda: self.api.inspect_volume(target))
        self._retried(f"inspect volume {source}", lambda: self.api.inspect_volume(source))
        labels = {**(info.get("Labels") or {}), L.ROLE: "helper"}
        config = self.api.create_host_config(network_mode="none", mounts=[
            _mount("/from", source, True), _mount("/to", target, False)])
        script = "find /to -mindepth 1 -delete && cp -a /from/. /to/"
        made = self._once(f"create a helper to copy volume {source}", lambda: self.api.create_container(
            HELPER_IMAGE, command=["sh", "-c", script], labels=labels, host_config=config, network_disabled=True))
        helper = str(made["Id"])
        try:
            self._once(f"copy volume {source} to {target}", lambda: self.api.start(helper))
            code = self._once(f"copy volume {source} to {target}",
                              lambda: self.api.wait(helper, timeout=600)).get("StatusCode")
            if code != 0:
                tail = self._once("helper logs", lambda: self.api.logs(helper, tail=5)).decode(errors="replace")
                raise EngineError(f"copy volume {source} to {target}: exited with code {code}: {tail.strip()}")
        finally:
            self.remove_container(helper, 0)

    def fill_volume(self, spec: VolumeSpec, source: str) -> str:
        if getattr(self, "_cow", None) is not False:
            made = self._fill_overlay(spec, source)
            if made is not None:
                return made
        return Backend.fill_volume(self, spec, source)  # type: ignore[arg-type]  # the mixin's host is a Backend

    def _fill_overlay(self, spec: VolumeSpec, source: str) -> str | None:
        """``spec`` as an overlay of ``source`` (see COW_PARTS), or None where it cannot be one: the data is
        not in a plain local volume, ``spec`` exists and another container mounts it, or this engine
        cannot mount it (remembered: no second try in this process)."""
        data = self._retried(f"inspect volume {source}", lambda: self.api.inspect_volume(source))
        if data.get("Driver") != "local" or data.get("Options") or not data.get("Mountpoint"):
            return None
        if self._users(spec.name, holders=False):
            return None  # mounted by another container (a volume of the blueprint that others share): copied
        self.remove_volume(spec.name)  # one of the run, made empty a moment ago, or filled before (a reset)
        labels = dict(spec.labels)
        upper, work = (f"{spec.name}{part}" for part in COW_PARTS)
        try:
            dirs = []
            for name in (upper, work):
                self._retried(f"create volume {name}", lambda n=name: self.api.create_volume(  # type: ignore[misc]
                    name=n, labels={**labels, L.ROLE: "cow"}))
                dirs.append(str(self._retried(f"inspect volume {name}",
                                              lambda n=name: self.api.inspect_volume(n))["Mountpoint"]))  # type: ignore[misc]
            options = {"type": "overlay", "device": "overlay",
                       "o": f"lowerdir={data['Mountpoint']},upperdir={dirs[0]},workdir={dirs[1]}"}
            ident = self._retried(f"create volume {spec.name}", lambda: self.api.create_volume(
                name=spec.name, driver="local", driver_opts=options, labels=labels))["Name"]
            config = self.api.create_host_config(network_mode="none", mounts=[
                _mount("/data", spec.name, False), _mount("/upper", upper, False), _mount("/work", work, False),
                _mount("/lower", source, True)])
            holder = str(self._once(f"create the holder of volume {spec.name}", lambda: self.api.create_container(
                HELPER_IMAGE, command=["true"], name=f"{spec.name}{COW_HOLDER}", labels={**labels, L.ROLE: "holder"},
                host_config=config, network_disabled=True))["Id"])
        except BaseException:
            self._undo_overlay(spec.name)
            raise
        try:  # an archive call mounts every volume of the holder, the overlay too: the check that it mounts
            root = self._once(f"mount volume {spec.name}", lambda: self._root(holder, "/lower"))
        except EnvkitError:  # no overlayfs here (a rootless engine, a data root on overlayfs, ...): copy
            self._cow = False
            self._undo_overlay(spec.name)
            return None
        try:  # the overlay's root is the upper directory's: give it the data's owner and mode (PostgreSQL checks)
            self._once(f"set the root of volume {spec.name}", lambda: self.api.put_archive(holder, "/", root))
        except BaseException:
            self._undo_overlay(spec.name)
            raise
        self._cow = True
        return str(ident)

    def _root(self, container_id: str, path: str) -> bytes:
        """A tar of one entry, ``upper``: the directory at ``path``, its owner, group, mode and time (read
        from the first header of its archive; the rest is never sent)."""
        # The SDK's get_archive would leave the response open with the engine still sending: read the
        # first block, then close the connection, which ends the engine's side.
        response = self.api._get(self.api._url("/containers/{0}/archive", container_id), params={"path": path},
                                 stream=True)
        try:
            self.api._raise_for_status(response)
            head = b""
            for piece in response.iter_content(tarfile.BLOCKSIZE):  # decoded (the engine may gzip it)
                head += piece
                if len(head) >= tarfile.BLOCKSIZE:
                    break
            if len(head) < tarfile.BLOCKSIZE:
                raise EngineError(f"archive of {path} in container {container_id[:12]} ended early")
        finally:
            response.close()
        found = tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
        entry = tarfile.TarInfo("upper")
        entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, found.mode & 0o7777, found.mtime
        entry.uid, entry.gid, entry.uname, entry.gname = found.uid, found.gid, found.uname, found.gname
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            archive.addfile(entry)
        return out.getvalue()

    def _users(self, volume: str, holders: bool) -> dict[str, str]:
        """The containers (id -> name) that mount ``volume``: its holder only, or every other one."""
        found = self._retried(f"list the containers of volume {volume}",
                              lambda: self.api.containers(all=True, filters={"volume": volume}))
        return {str(c["Id"]): str((c.get("Names") or ["?"])[0]).lstrip("/") for c in found
                if ((c.get("Labels") or {}).get(L.ROLE) == "holder") is holders}

    def _undo_overlay(self, name: str) -> None:
        """Whatever parts of the overlay ``name`` were made (nothing but its holder mounts it yet)."""
        with contextlib.suppress(EnvkitError):
            self._remove_overlay(name)

    def _remove_overlay(self, name: str) -> None:
        """Remove ``name`` (an overlay volume of COW_PARTS), its holder, then its directories, whichever of
        them are there; a Busy error naming them when a container other than its holder mounts it."""
        others = self._users(name, holders=False)
        if others:
            raise Busy(f"remove volume {name}: volume is in use by {', '.join(others.values())}")
        for ident in self._users(name, holders=True):
            self.remove_container(ident, 0)
        self._gone_ok(f"remove volume {name}", lambda: self.api.remove_volume(name, force=True))
        for part in COW_PARTS:
            self._gone_ok(f"remove volume {name}{part}", lambda p=part: self.api.remove_volume(  # type: ignore[misc]
                f"{name}{p}", force=True))

    # -- SIGNAL, PAUSE, NETWORK_CONNECT -----------------------------------------------------------
    def stop_container(self, container_id: str, grace: float) -> None:
        self._written(container_id)  # its gate opens again by the file alone (release_container)
        self._once(f"stop container {container_id[:12]}", lambda: self.api.stop(container_id, timeout=round(grace)))

    def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._written(container_id)
        self._once(f"signal container {container_id[:12]}", lambda: self.api.kill(container_id, signal=signal))

    def pause_container(self, container_id: str) -> None:
        self._once(f"pause container {container_id[:12]}", lambda: self.api.pause(container_id))

    def unpause_container(self, container_id: str) -> None:
        self._once(f"unpause container {container_id[:12]}", lambda: self.api.unpause(container_id))

    def connect_network(self, container_id: str, network: str, aliases: tuple[str, ...] = ()) -> None:
        self._connect(container_id, NetworkAttachment(network, aliases))

    def _connect(self, container_id: str, a: NetworkAttachment) -> None:
        """A network, with its aliases and, at create, its fixed address (``NetworkAttachment``)."""
        self._once(f"connect container {container_id[:12]} to {a.network}", lambda: self.api.connect_container_to_network(
            container_id, a.network, aliases=list(a.aliases) or None, ipv4_address=a.address))

    def rename_container(self, container_id: str, name: str) -> None:
        self._once(f"rename container {container_id[:12]} to {name}", lambda: self.api.rename(container_id, name))

    def disconnect_network(self, container_id: str, network: str) -> None:
        self._once(f"disconnect container {container_id[:12]} from {network}",
                   lambda: self.api.disconnect_container_from_network(container_id, network))

    def remove_network(self, network_id: str) -> None:
        short = network_id[:12]

        def attached() -> list[endpoints.Endpoint]:  # asked only after a "has active endpoints"
            found = self._once(f"inspect network {short}", lambda: self.api.inspect_network(network_id))
            return [(str(ep.get("Name") or ident), self._exists(ident))
                    for ident, ep in (found.get("Containers") or {}).items()]

        endpoints.remove_network(short, lambda: self._once(f"remove network {short}", lambda: self.api.remove_network(
            network_id)), attached, lambda name: self._once(f"force {name} off network {short}", lambda: (
                self.api.disconnect_container_from_network(name, network_id, force=True))))

    def _exists(self, container_id: str) -> bool:
        try:
            self._once(f"inspect container {container_id[:12]}", lambda: self.api.inspect_container(container_id))
        except NotFound:
            return False
        return True
