"""The Docker engine backend: the only module that imports ``docker``.

Every call goes through the SDK's low-level ``APIClient`` (one HTTP request each, no hidden extra
inspects). Every ``docker.errors``/``requests`` failure becomes an envkit error of its kind in one
place, ``translate``; idempotent calls are retried under ``envkit.retry``'s one policy.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlparse

import docker
import docker.errors
import docker.utils
import requests.exceptions
import urllib3.exceptions
from docker.types import IPAMConfig, IPAMPool, Mount, Ulimit

from envkit import labels as L
from envkit import retry
from envkit.backends import _docker_wire as wire
from envkit.backends import hostports, subnets
from envkit.backends._docker_caps import DockerCapabilities
from envkit.backends._exec_stream import SocketSession
from envkit.backends.base import (
    LANES,
    Backend,
    BuildSpec,
    Capability,
    ContainerSpec,
    ContainerState,
    ExecResult,
    ExecSession,
    ImageInfo,
    LogLine,
    NetworkAttachment,
    NetworkSpec,
    Resource,
    VolumeSpec,
    engine_lanes,
)
from envkit.errors import Busy, Conflict, ConnectionLost, EngineError, EnvkitError, NotFound, PortBusy, Transient
from envkit.text import duration

__all__ = ["DockerBackend", "open_backend", "translate"]

T = TypeVar("T")
#: the address in Docker's "Bind for 127.0.0.1:8080 failed" / "listen tcp4 0.0.0.0:8080: bind: ..."
_BOUND = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})")


def translate(exc: BaseException, what: str, where: str) -> EnvkitError:
    """The one translation of the SDK's errors into envkit's kinds: by HTTP status and exception class
    first; by Docker's message only where its status says nothing better."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, docker.errors.APIError):
        reason = exc.explanation or str(exc)
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        text, status = reason.lower(), exc.status_code
        kind: type[EngineError] = EngineError
        if status == 404 or isinstance(exc, docker.errors.NotFound):
            kind = NotFound
        elif "active endpoints" in text or "volume is in use" in text or "already in progress" in text:
            kind = Busy  # 403 / 409 (and 500 on older engines) for what ends by itself
        elif ("port is already allocated" in text or "bind: address already in use" in text
              or ("address already in use" in text and _BOUND.search(reason))):
            # a host port: "listen tcp4 127.0.0.1:8080: bind: address already in use" (Podman's rootlessport
            # may name none: "listen tcp :8080: bind: …")
            found = _BOUND.search(reason)
            return PortBusy(prefix + reason, found.group(1).strip("[]") if found else "",
                            int(found.group(2)) if found else 0)
        elif (status == 409 or "already exists" in text or "pool overlaps" in text or "already in use by" in text
              or text.endswith("address already in use")):
            # 403 for an endpoint that already exists, a subnet another network holds, or (at a start) a fixed
            # address another container took (bare, or after "failed to set up container networking: " on
            # newer engines); 500 (Docker 20.10) for a rename onto a name another container holds
            kind = Conflict
        elif status is not None and status >= 500:
            # Docker answers 500 for a few state errors: those are conflicts, not worth another try.
            kind = Conflict if ("is not paused" in text or "is not connected" in text) else Transient
        return kind(prefix + reason)
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | OSError):
        causes = list(wire.chain(exc))
        if any(isinstance(c, urllib3.exceptions.ReadTimeoutError | requests.exceptions.ReadTimeout | TimeoutError)
               for c in causes):
            return Transient(f"{prefix}timed out")
        if any(isinstance(c, ConnectionRefusedError | FileNotFoundError | urllib3.exceptions.NewConnectionError)
               for c in causes):
            return wire.unreachable(where, exc)
        if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
            return ConnectionLost(f"{prefix}connection dropped ({wire.cause(exc)})")
    return EngineError(prefix + wire.short(exc))


class DockerBackend(DockerCapabilities, Backend):
    name = "docker"
    lanes: int | None = LANES
    capabilities = frozenset(Capability)

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if environment is None else environment)
        if self.lanes is not None:
            self.lanes = engine_lanes(env, self.lanes)
        self.where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._behind = []  # (container id, thread): the gates' fallback files being written (release_container, settle)
        if env.get("ENVKIT_VOLUME_OVERLAY", "").strip().lower() in ("0", "false", "no", "off"):
            self._cow = False  # volumes from snapshots copied, never overlays (docs/snapshots.md)
        url = urlparse(self.where)
        if url.scheme in ("tcp", "http", "https", "ssh") and url.hostname:
            # Published ports live on the engine's host, and its bridge networks are not routable from here.
            self.host = url.hostname
            self.direct_routes = url.hostname in ("127.0.0.1", "localhost")
        try:
            self._client = docker.DockerClient.from_env(environment=env, timeout=600, max_pool_size=64)
            self.api = self._client.api
        except docker.errors.DockerException as exc:
            raise wire.unreachable(self.where, exc) from exc
        self._settings = {k: env[k] for k in (subnets.POOL_VAR, subnets.SIZE_VAR) if k in env}

    # -- calls, errors and retries ----------------------------------------------------------------
    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise translate(exc, what, self.where) from exc

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        with self._call(what):
            return fn()

    def _retried(self, what: str, fn: Callable[[], T]) -> T:
        return retry.call(lambda: self._once(what, fn))

    def _create(self, what: str, make: Callable[[], T], existing: Callable[[], T | None]) -> T:
        return retry.create(lambda: self._once(what, make), existing)

    def _gone_ok(self, what: str, fn: Callable[[], object]) -> None:
        with contextlib.suppress(NotFound):  # removing what is already gone is success
            self._retried(what, fn)

    def ping(self) -> None:
        info = self._retried("ping", self.api.info)
        # Rootless engines and Docker Desktop keep container addresses out of this host's reach:
        # probes then go through published ports.
        security = " ".join(str(o) for o in info.get("SecurityOptions") or [])
        if "rootless" in security or "Docker Desktop" in str(info.get("OperatingSystem", "")):
            self.direct_routes = False

    def close(self) -> None:
        self._client.close()

    # -- images -----------------------------------------------------------------------------------
    def image_exists(self, tag: str) -> bool:
        try:
            self._retried(f"inspect image {tag}", lambda: self.api.inspect_image(tag))
        except NotFound:
            return False
        return True

    def pull_image(self, tag: str) -> None:
        self._once(f"pull image {tag}", lambda: self.api.pull(tag))  # the SDK splits name, tag and @digest

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        with self._call(""):  # the engine's reason alone: the caller names the image and the services
            stream = self.api.build(
                path=str(spec.context), dockerfile=spec.dockerfile, tag=spec.tag, buildargs=dict(spec.args),
                target=spec.target, labels=dict(spec.labels), rm=True, forcerm=True, decode=True,
            )
            failure = ""
            for chunk in stream:
                if "error" in chunk:
                    failure = failure or str(chunk.get("error", "")).strip() or "the build failed"
                    continue  # read to the end: the engine then closes the stream (no socket left open)
                text = chunk.get("stream")
                if text and not failure:
                    for line in str(text).splitlines():
                        if line.strip():
                            on_line(line)
        if failure:
            raise EngineError(failure)

    def list_images(self, labels: Mapping[str, str | None]) -> list[ImageInfo]:
        rows = self._retried("list images", lambda: self.api.images(filters=self._filters(labels)))
        if not rows:
            return []
        users: dict[str, int] = {}
        for c in self._retried("list containers", lambda: self.api.containers(all=True)):
            users[str(c.get("ImageID", ""))] = users.get(str(c.get("ImageID", "")), 0) + 1
        return [wire.image_info(row, users.get(str(row["Id"]), 0)) for row in rows]

    def remove_image(self, tag: str) -> None:
        # Not forced: a tag in use by a container is a Conflict (409); the image goes with its last tag.
        self._gone_ok(f"remove image {tag}", lambda: self.api.remove_image(tag))

    # -- networks and volumes ---------------------------------------------------------------------
    def create_network(self, spec: NetworkSpec) -> str:
        labels, pool = dict(spec.labels), self.subnet_pool

        def named() -> list[dict[str, Any]]:
            rows = self._retried("list networks", lambda: self.api.networks(names=[spec.name]))
            return [n for n in rows if n.get("Name") == spec.name]

        def make(subnet: ipaddress.IPv4Network | None) -> str:
            ipam = None if subnet is None else IPAMConfig(pool_configs=[
                IPAMPool(subnet=str(subnet), gateway=str(subnets.gateway(subnet)))])
            return self._once(f"create network {spec.name}" + (f" on {subnet}" if subnet else ""), lambda: str(
                self.api.create_network(spec.name, driver="bridge", labels=labels, internal=spec.internal, ipam=ipam,
                                        check_duplicate=True)["Id"]))

        def existing() -> str | None:
            return next((str(n["Id"]) for n in named() if n.get("Labels") == labels), None)

        if pool is None:  # ENVKIT_SUBNET_POOL=engine
            return retry.create(lambda: make(None), existing)
        return retry.create(lambda: pool.allocate(spec.name, self._taken_subnets, make, lambda: bool(named())),
                            existing)

    @functools.cached_property
    def subnet_pool(self) -> subnets.Allocator | None:
        """Where networks get their addresses (``envkit.backends.subnets``); None: the engine's own pools.
        Read on first use, so that a bad setting stops ``up``, never ``ls`` or ``down``."""
        return subnets.allocator_from(self._settings)

    def _taken_subnets(self) -> list[ipaddress.IPv4Network]:
        """Every IPv4 range the engine's networks hold (envkit's or not) and, for a local engine, the
        host's routes."""
        taken = wire.ipv4_subnets(self._once("list networks", self.api.networks))
        if self.where.startswith("unix://"):
            with contextlib.suppress(OSError), open("/proc/net/route", encoding="ascii") as fh:
                taken += subnets.parse_routes(fh.read())
        return taken

    def create_volume(self, spec: VolumeSpec) -> str:
        # Docker returns an existing volume of that name as it is: the call is idempotent.
        made = self._retried(f"create volume {spec.name}",
                             lambda: self.api.create_volume(name=spec.name, labels=dict(spec.labels)))
        return str(made["Name"])

    # -- containers -------------------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        api = self.api
        # A local engine publishes on this host: envkit chooses the host ports, so they last the container's life.
        local = self.host in ("127.0.0.1", "localhost")
        exposed, port_bindings = wire.bindings(hostports.choose(spec.ports) if local else spec.ports)
        mounts = [Mount(target=m.target, source=m.source, type=m.type, read_only=m.read_only) for m in spec.mounts]
        what = f"create container {spec.name}"
        with self._call(what):
            host_config = api.create_host_config(
                port_bindings=port_bindings or None, mounts=mounts or None,
                tmpfs=dict(spec.tmpfs) or None, mem_limit=spec.memory,
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None, privileged=spec.privileged,
                cap_add=list(spec.cap_add) or None, cap_drop=list(spec.cap_drop) or None,
                read_only=spec.read_only or None, network_mode=spec.network_mode, init=spec.init or None,
                ulimits=[Ulimit(name=n, soft=s, hard=h) for n, s, h in spec.ulimits] or None,
            )
            others: list[NetworkAttachment] = []
            networking = None
            if spec.network_mode is None:
                first, *others = spec.networks
                networking = api.create_networking_config(
                    {first.network: api.create_endpoint_config(aliases=list(first.aliases), ipv4_address=first.address)})

        def existing() -> str | None:
            try:
                state = self.inspect_container(spec.name)
            except NotFound:
                return None
            return state.id if dict(state.labels).items() >= dict(spec.labels).items() else None

        container_id = self._create(what, lambda: str(api.create_container(
            spec.image, command=list(spec.command) if spec.command is not None else None,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            environment=dict(spec.environment), user=spec.user, working_dir=spec.working_dir,
            hostname=spec.hostname, labels=dict(spec.labels), name=spec.name, ports=exposed or None,
            host_config=host_config, networking_config=networking, stop_signal=spec.stop_signal,
            stop_timeout=spec.stop_timeout, healthcheck={"Test": ["NONE"]} if spec.healthcheck_off else None,
        )["Id"]), existing)
        for a in others:
            self._connect(container_id, a)
        return container_id

    def start_container(self, container_id: str) -> None:
        what = f"start container {container_id[:12]}"
        try:
            self._once(what, lambda: self.api.start(container_id))
        except Conflict as exc:
            if not str(exc).lower().endswith("address already in use") or not self._unfix_taken(container_id):
                raise
            self._once(what, lambda: self.api.start(container_id))

    def _unfix_taken(self, container_id: str) -> bool:
        """A container made with a fixed address (a reset keeps a service's that way) holds it only while it
        runs: stopped, another container may take it, and the engine then refuses to start it. It is attached
        again to each network where that happened, with its aliases and without the address, and gets a free
        one at its start, as a container with no fixed address does at every start. Whether one was."""
        state = self.inspect_container(container_id)
        changed = False
        for net, address in state.fixed.items():
            found: dict[str, Any] = self._retried(f"inspect network {net}", functools.partial(self.api.inspect_network, net))
            held = {str(ep.get("IPv4Address", "")).split("/")[0]
                    for ident, ep in (found.get("Containers") or {}).items() if ident != state.id}
            if address in held:
                self.disconnect_network(container_id, net)
                self.connect_network(container_id, net, state.aliases.get(net, ()))
                changed = True
        return changed

    def inspect_container(self, container_id: str) -> ContainerState:
        info = self._retried(f"inspect container {container_id[:12]}", lambda: self.api.inspect_container(container_id))
        return wire.from_inspect(info)

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        try:
            result = self._once(f"wait for container {container_id[:12]}",
                                lambda: self.api.wait(container_id, timeout=max(timeout, 0.05)))
        except Transient:
            return None  # the engine answers when the container exits: until then the read times out
        return int(result.get("StatusCode", -1))

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        with self._call(f"exec in container {container_id[:12]}"):
            made = self.api.exec_create(container_id, list(command), user=user or "", stdout=True, stderr=True)
            if timeout is None:
                raw = self.api.exec_start(made["Id"])
                output = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            else:
                output, finished = wire.read_exec(self.api.exec_start(made["Id"], socket=True), timeout)
                if not finished:
                    # The command goes on inside the container; the caller only stops waiting for it.
                    return ExecResult(exit_code=-1, output=f"{output}(still running after {duration(timeout)})")
            code = self.api.exec_inspect(made["Id"]).get("ExitCode")
        return ExecResult(exit_code=int(code) if code is not None else -1, output=output)

    def exec_stream(self, container_id: str, command: tuple[str, ...], *, stdin: int | None, stdout: BinaryIO,
                    stderr: BinaryIO, tty: bool = False, user: str | None = None) -> ExecSession:
        with self._call(f"exec in container {container_id[:12]}"):
            made = self.api.exec_create(container_id, list(command), user=user or "", stdout=True, stderr=True,
                                        stdin=stdin is not None, tty=tty)
            sock = self.api.exec_start(made["Id"], tty=tty, socket=True)
        return SocketSession(sock, stdin, stdout, stderr, framed=not tty, exit_code=lambda: self._exec_code(made["Id"]),
                             resize=lambda rows, cols: self.api.exec_resize(made["Id"], height=rows, width=cols))

    def _exec_code(self, exec_id: str) -> int:
        for _ in range(40):  # the engine may mark the exec ended a moment after closing its stream
            info = self._retried("inspect exec", lambda: self.api.exec_inspect(exec_id))
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.05)
        return -1

    @staticmethod
    def _log_args(tail: int | None, since: float | None, until: float | None = None,
                  timestamps: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"tail": tail if tail is not None else "all", "timestamps": timestamps}
        if since is not None and since > 0:  # the SDK refuses 0
            kwargs["since"] = float(since)
        if until is not None:
            kwargs["until"] = max(float(until), 1e-6)
        return kwargs

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        kwargs = self._log_args(tail, since, until)
        data = self._retried(f"logs of container {container_id[:12]}",
                             lambda: self.api.logs(container_id, stdout=True, stderr=True, **kwargs))
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]:
        with self._call(f"follow logs of container {container_id[:12]}"):
            stream = self.api.logs(container_id, stream=True, follow=True, tail=tail if tail is not None else "all")
            for chunk in stream:
                yield chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)

    def log_lines(self, container_id: str, tail: int | None = None, since: float | None = None,
                  until: float | None = None) -> list[LogLine]:
        kwargs = self._log_args(tail, since, until, timestamps=True)
        data = self._retried(f"logs of container {container_id[:12]}",
                             lambda: self.api.logs(container_id, stdout=True, stderr=True, **kwargs))
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return [wire.log_line(line) for line in text.splitlines() if line]

    def follow_log_lines(self, container_id: str, tail: int | None = None,
                         since: float | None = None) -> Iterator[LogLine]:
        kwargs = self._log_args(tail, since, timestamps=True)
        with self._call(f"follow logs of container {container_id[:12]}"):
            stream = self.api.logs(container_id, stream=True, follow=True, **kwargs)
            pending = ""
            for chunk in stream:
                pending += chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)
                *lines, pending = pending.split("\n")
                for line in lines:
                    yield wire.log_line(line)
            if pending:
                yield wire.log_line(pending)

    # -- discovery and removal --------------------------------------------------------------------
    @staticmethod
    def _filters(labels: Mapping[str, str | None]) -> dict[str, list[str]]:
        return {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        rows = self._retried("list containers", lambda: self.api.containers(all=True, filters=self._filters(labels)))
        return [wire.from_listing(row) for row in rows]

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        filters = self._filters(labels)
        containers = self._retried("list containers", lambda: self.api.containers(all=True, filters=filters))
        networks = self._retried("list networks", lambda: self.api.networks(filters=filters))
        volumes = self._retried("list volumes", lambda: self.api.volumes(filters=filters)).get("Volumes") or []
        return (
            [Resource("container", c["Id"], str((c.get("Names") or ["?"])[0]).lstrip("/"), c.get("Labels") or {})
             for c in containers]
            + [Resource("network", n["Id"], n["Name"], n.get("Labels") or {}) for n in networks]
            + [Resource("volume", v["Name"], v["Name"], v.get("Labels") or {}) for v in volumes]
        )

    def remove_container(self, container_id: str, grace: float) -> None:
        what = f"container {container_id[:12]}"
        if grace > 0:
            try:
                self._retried(f"stop {what}", lambda: self.api.stop(container_id, timeout=round(grace)))
            except NotFound:
                return
            except Conflict:
                pass  # not in a state to stop: the forced removal below ends it anyway
        self._gone_ok(f"remove {what}", lambda: self.api.remove_container(container_id, force=True, v=True))

    def remove_volume(self, name: str) -> None:
        try:
            info = self._retried(f"inspect volume {name}", lambda: self.api.inspect_volume(name))
        except NotFound:
            return
        if (info.get("Options") or {}).get("type") == "overlay" and (info.get("Labels") or {}).get(L.MANAGED):
            self._remove_overlay(name)  # one filled from a snapshot: with its holder and directories
            return
        self._gone_ok(f"remove volume {name}", lambda: self.api.remove_volume(name, force=True))

    # -- EXPORT_FILESYSTEM (the other capabilities: DockerCapabilities) -------------------------
    def export_filesystem(self, container_id: str, tag: str, labels: Mapping[str, str]) -> str:
        repository, version = docker.utils.parse_repository_tag(tag)
        made = self._once(f"export container {container_id[:12]} as {tag}", lambda: self.api.commit(
            container_id, repository=repository, tag=version or "latest", conf={"Labels": dict(labels)}))
        return str(made["Id"])


def open_backend(environment: Mapping[str, str]) -> Backend:
    """The engine table's entry point (see ``envkit.backends.connect``)."""
    return DockerBackend(environment)
