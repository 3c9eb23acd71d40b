"""The Docker engine backend: the only module that imports ``docker``.

Every call goes through the SDK's low-level ``APIClient`` (one HTTP request each, no hidden extra
inspects) and every ``docker.errors``/``requests`` failure becomes an envkit error here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import requests.exceptions
from docker.types import Mount
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from envkit.backends.base import (
    Backend,
    BuildSpec,
    ContainerSpec,
    ContainerState,
    ExecResult,
    Resource,
)
from envkit.errors import EngineError, EngineUnavailable

__all__ = ["DockerBackend"]

_EXITED = re.compile(r"Exited \((-?\d+)\)")


# The pre-start gate (see envkit.plan): a shell that waits for the release file, woken at once by
# SIGWINCH (ignored by default, so a signal that comes early is harmless; the 0.25 s nap bounds that
# case), then becomes the service's own process with exec: same PID 1, same argv, same environment.
# Before exec it reaps its nap and leaves WINCH ignored (the default action anyway), so a release
# signal that lands just after the exec cannot reach the service; TERM/INT end a still-gated container.
GATE_SCRIPT = (
    "trap 'exit 143' TERM INT; trap : WINCH; "
    'while [ ! -e /.envkit-go ]; do sleep 0.25 & wait $!; done; '
    "trap '' WINCH; kill $! 2>/dev/null; wait $! 2>/dev/null; trap - TERM INT; exec \"$@\""
)
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _read_exec(sock: Any, timeout: float) -> tuple[str, bool]:
    """Read a non-TTY exec stream (8-byte frame headers) until EOF or ``timeout``; (output, finished)."""
    raw = getattr(sock, "_sock", sock)
    deadline = time.monotonic() + timeout
    data = b""
    finished = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw.settimeout(left)
            try:
                chunk = raw.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                finished = True
                break
            data += chunk
    finally:
        for end in (sock, raw):
            with contextlib.suppress(OSError):
                end.close()
    out = bytearray()
    i = 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4:i + 8], "big")
        out += data[i + 8:i + 8 + size]
        i += 8 + size
    return out.decode(errors="replace"), finished


def _tar_of_empty_file(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(name))
    return buffer.getvalue()


_GO_TAR = _tar_of_empty_file(".envkit-go")


class _Busy(Exception):
    """A removal the engine refused for now (e.g. a network with endpoints still detaching)."""


def _unreachable(where: str, exc: BaseException) -> EngineUnavailable:
    return EngineUnavailable(
        f"cannot reach the Docker engine at {where}: {_short(exc)}\n"
        "  check that dockerd is running (`docker info`), or that DOCKER_HOST points to a live engine;\n"
        "  `bash scripts/setup.sh` installs and starts one on Debian"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class DockerBackend(Backend):
    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if environment is None else environment)
        self.where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        url = urlparse(self.where)
        if url.scheme in ("tcp", "http", "https", "ssh") and url.hostname:
            # Published ports live on the engine's host, and its bridge networks are not routable from here.
            self.host = url.hostname
            self.direct_routes = url.hostname in ("127.0.0.1", "localhost")
        try:
            self._client = docker.DockerClient.from_env(environment=env, timeout=600, max_pool_size=64)
            self.api = self._client.api
        except docker.errors.DockerException as exc:
            raise _unreachable(self.where, exc) from exc

    # -- error translation ------------------------------------------------------------------------
    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise _unreachable(self.where, exc) from exc
        except docker.errors.APIError as exc:
            reason = exc.explanation or str(exc)
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            raise EngineError(f"{what}: {reason}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"{what}: {_short(exc)}") from exc

    def ping(self) -> None:
        with self._call("ping"):
            info = self.api.info()
        # Rootless engines and Docker Desktop keep container addresses out of this host's reach:
        # probes then go through published ports.
        security = " ".join(str(o) for o in info.get("SecurityOptions") or [])
        if "rootless" in security or "Docker Desktop" in str(info.get("OperatingSystem", "")):
            self.direct_routes = False

    # -- images -----------------------------------------------------------------------------------
    def image_exists(self, tag: str) -> bool:
        try:
            with self._call(f"inspect image {tag}"):
                self.api.inspect_image(tag)
            return True
        except EngineError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return False
            raise

    def image_healthcheck(self, tag: str) -> bool:
        with self._call(f"inspect image {tag}"):
            config = self.api.inspect_image(tag).get("Config") or {}
        test = (config.get("Healthcheck") or {}).get("Test") or []
        return bool(test) and test[0] != "NONE"

    def pull_image(self, tag: str) -> None:
        with self._call(f"pull image {tag}"):
            self.api.pull(tag)  # the SDK splits name, tag and @digest itself

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        with self._call(f"build image {spec.tag}"):
            stream = self.api.build(
                path=str(spec.context), dockerfile=spec.dockerfile, tag=spec.tag, buildargs=dict(spec.args),
                target=spec.target, labels=dict(spec.labels), rm=True, forcerm=True, decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise EngineError(f"build image {spec.tag}: {str(chunk.get('error', '')).strip()}")
                text = chunk.get("stream")
                if text:
                    for line in str(text).splitlines():
                        if line.strip():
                            on_line(line)

    # -- networks and volumes ---------------------------------------------------------------------
    def create_network(self, name: str, labels: Mapping[str, str], internal: bool) -> str:
        with self._call(f"create network {name}"):
            made = self.api.create_network(name, driver="bridge", labels=dict(labels), internal=internal,
                                           check_duplicate=True)
        return str(made["Id"])

    def create_volume(self, name: str, labels: Mapping[str, str]) -> str:
        with self._call(f"create volume {name}"):
            made = self.api.create_volume(name=name, labels=dict(labels))
        return str(made["Name"])

    # -- containers -------------------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        api = self.api
        port_bindings: dict[str, Any] = {}
        exposed: list[Any] = []
        for p in spec.ports:
            key = f"{p.container}/{p.protocol}"
            exposed.append((p.container, p.protocol))
            port_bindings[key] = (p.host_ip, p.host) if p.host else (p.host_ip,)
        mounts = [Mount(target=m.target, source=m.source, type=m.type, read_only=m.read_only)
                  for m in spec.mounts]
        with self._call(f"create container {spec.name}"):
            host_config = api.create_host_config(
                port_bindings=port_bindings or None, mounts=mounts or None,
                tmpfs=dict(spec.tmpfs) or None, mem_limit=spec.memory,
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None, privileged=spec.privileged,
                cap_add=list(spec.cap_add) or None,
            )
            first, *others = spec.networks
            networking = api.create_networking_config(
                {first[0]: api.create_endpoint_config(aliases=list(first[1]))}
            )
            made = api.create_container(
                spec.image, command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                environment=dict(spec.environment), user=spec.user, working_dir=spec.working_dir,
                hostname=spec.hostname, labels=dict(spec.labels), name=spec.name, ports=exposed or None,
                host_config=host_config, networking_config=networking, stop_signal=spec.stop_signal,
                stop_timeout=spec.stop_timeout,
            )
            container_id = str(made["Id"])
            for network, aliases in others:
                api.connect_container_to_network(container_id, network, aliases=list(aliases))
        return container_id

    def create_gated_container(self, spec: ContainerSpec) -> tuple[str, bool]:
        with self._call(f"inspect image {spec.image}"):
            config = self.api.inspect_image(spec.image).get("Config") or {}
        # The process Docker would have run: the entrypoint, then the command (the image's command is
        # dropped when the blueprint sets its own entrypoint, as Docker does).
        entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else list(config.get("Entrypoint") or [])
        if spec.command is not None:
            command = list(spec.command)
        else:
            command = list(config.get("Cmd") or []) if spec.entrypoint is None else []
        argv = entrypoint + command
        env_names = [k for k, _ in spec.environment] + [e.split("=", 1)[0] for e in config.get("Env") or []]
        if not argv or not all(_SHELL_NAME.match(name) for name in env_names):
            # No process to gate, or variables a POSIX shell would drop on exec (e.g. "discovery.type").
            return self.create_container(spec), False
        gated = replace(spec, entrypoint=("/bin/sh", "-c", GATE_SCRIPT, "envkit-gate"), command=tuple(argv))
        container_id = self.create_container(gated)
        if self._has(container_id, "/bin/sh"):
            return container_id, True
        self.remove_container(container_id, 0)  # an image without a shell: no gate, a plain start later
        return self.create_container(spec), False

    def _has(self, container_id: str, path: str) -> bool:
        try:
            with self._call(f"stat {path} in container {container_id[:12]}"):
                stream, _ = self.api.get_archive(container_id, path)
                for _ in stream:
                    pass
        except EngineError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return False
            raise
        return True

    def release_container(self, container_id: str) -> None:
        with self._call(f"release container {container_id[:12]}"):
            self.api.put_archive(container_id, "/", _GO_TAR)
            self.api.kill(container_id, signal="SIGWINCH")

    def start_container(self, container_id: str) -> None:
        with self._call(f"start container {container_id[:12]}"):
            self.api.start(container_id)

    def inspect_container(self, container_id: str) -> ContainerState:
        with self._call(f"inspect container {container_id[:12]}"):
            info = self.api.inspect_container(container_id)
        state = info.get("State") or {}
        settings = info.get("NetworkSettings") or {}
        ports: dict[str, tuple[str, int]] = {}
        for key, bindings in (settings.get("Ports") or {}).items():
            for b in bindings or []:
                # Prefer the IPv4 binding; an engine may list "::" beside "0.0.0.0".
                if b.get("HostPort") and (key not in ports or ":" not in b.get("HostIp", "")):
                    ports.setdefault(key, (b.get("HostIp") or "0.0.0.0", int(b["HostPort"])))
        status = str(state.get("Status", "unknown"))
        return ContainerState(
            id=str(info["Id"]), name=str(info.get("Name", "")).lstrip("/"), status=status,
            exit_code=int(state["ExitCode"]) if status in ("exited", "dead") else None,
            health=(state.get("Health") or {}).get("Status"),
            addresses={n: v.get("IPAddress", "") for n, v in (settings.get("Networks") or {}).items()},
            ports=ports, labels=(info.get("Config") or {}).get("Labels") or {},
            started_at=str(state.get("StartedAt", "")), oom_killed=bool(state.get("OOMKilled")),
        )

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        try:
            with self._call(f"wait for container {container_id[:12]}"):
                try:
                    result = self.api.wait(container_id, timeout=max(timeout, 0.05))
                except requests.exceptions.ConnectionError as exc:
                    # The engine's answer comes as a body after the headers; a read timeout there is
                    # reported as a connection error by requests, but it only means "still running".
                    if "timed out" in str(exc):
                        return None
                    raise
        except EngineError as exc:
            if isinstance(exc.__cause__, requests.exceptions.ReadTimeout):
                return None
            raise
        return int(result.get("StatusCode", -1))

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        with self._call(f"exec in container {container_id[:12]}"):
            made = self.api.exec_create(container_id, list(command), user=user or "", stdout=True, stderr=True)
            if timeout is None:
                raw = self.api.exec_start(made["Id"])
                output = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            else:
                output, finished = _read_exec(self.api.exec_start(made["Id"], socket=True), timeout)
                if not finished:
                    # The command goes on inside the container; the caller only stops waiting for it.
                    return ExecResult(exit_code=-1, output=f"{output}(still running after {timeout:g}s)")
            code = self.api.exec_inspect(made["Id"]).get("ExitCode")
        return ExecResult(exit_code=int(code) if code is not None else -1, output=output)

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        kwargs: dict[str, Any] = {"tail": tail if tail is not None else "all"}
        if since is not None:
            kwargs["since"] = since
        if until is not None:
            kwargs["until"] = until
        with self._call(f"logs of container {container_id[:12]}"):
            data = self.api.logs(container_id, stdout=True, stderr=True, **kwargs)
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]:
        with self._call(f"follow logs of container {container_id[:12]}"):
            stream = self.api.logs(container_id, stream=True, follow=True, tail=tail if tail is not None else "all")
            for chunk in stream:
                yield chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)

    # -- discovery and removal --------------------------------------------------------------------
    @staticmethod
    def _filters(labels: Mapping[str, str | None]) -> dict[str, list[str]]:
        return {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        with self._call("list containers"):
            rows = self.api.containers(all=True, filters=self._filters(labels))
        out = []
        for row in rows:
            status = str(row.get("State", "unknown"))
            exited = _EXITED.search(str(row.get("Status", "")))
            ports: dict[str, tuple[str, int]] = {}
            for p in row.get("Ports") or []:
                if p.get("PublicPort") and ":" not in p.get("IP", ""):
                    ports[f"{p['PrivatePort']}/{p.get('Type', 'tcp')}"] = (p.get("IP", "0.0.0.0"), int(p["PublicPort"]))
            networks = (row.get("NetworkSettings") or {}).get("Networks") or {}
            out.append(ContainerState(
                id=str(row["Id"]), name=str((row.get("Names") or ["?"])[0]).lstrip("/"), status=status,
                exit_code=int(exited.group(1)) if exited else None,
                health="healthy" if "(healthy)" in str(row.get("Status", "")) else None,
                addresses={n: v.get("IPAddress", "") for n, v in networks.items()}, ports=ports,
                labels=row.get("Labels") or {},
            ))
        return out

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        filters = self._filters(labels)
        with self._call("list resources"):
            containers = self.api.containers(all=True, filters=filters)
            networks = self.api.networks(filters=filters)
            volumes = self.api.volumes(filters=filters).get("Volumes") or []
        return (
            [Resource("container", c["Id"], str((c.get("Names") or ["?"])[0]).lstrip("/"), c.get("Labels") or {})
             for c in containers]
            + [Resource("network", n["Id"], n["Name"], n.get("Labels") or {}) for n in networks]
            + [Resource("volume", v["Name"], v["Name"], v.get("Labels") or {}) for v in volumes]
        )

    def _gone_ok(self, what: str, action: Callable[[], object]) -> None:
        try:
            with self._call(what):
                action()
        except EngineError as exc:
            cause = exc.__cause__
            if isinstance(cause, docker.errors.NotFound):
                return
            text = str(exc).lower()
            if "already in progress" in text or "is not running" in text:
                return
            if "active endpoints" in text or "in use" in text:
                raise _Busy(str(exc)) from exc
            raise

    def _retry_busy(self, what: str, action: Callable[[], object]) -> None:
        for attempt in Retrying(retry=retry_if_exception_type(_Busy), wait=wait_exponential(0.05, max=1),
                                stop=stop_after_delay(30), reraise=True):
            with attempt:
                self._gone_ok(what, action)

    def remove_container(self, container_id: str, grace: float) -> None:
        if grace > 0:
            self._gone_ok(f"stop container {container_id[:12]}",
                          lambda: self.api.stop(container_id, timeout=round(grace)))
        try:
            self._retry_busy(f"remove container {container_id[:12]}",
                             lambda: self.api.remove_container(container_id, force=True, v=True))
        except _Busy as exc:
            raise EngineError(str(exc)) from exc

    def remove_network(self, network_id: str) -> None:
        try:
            self._retry_busy(f"remove network {network_id[:12]}", lambda: self.api.remove_network(network_id))
        except _Busy as exc:
            raise EngineError(str(exc)) from exc

    def remove_volume(self, name: str) -> None:
        try:
            self._retry_busy(f"remove volume {name}", lambda: self.api.remove_volume(name, force=True))
        except _Busy as exc:
            raise EngineError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()
