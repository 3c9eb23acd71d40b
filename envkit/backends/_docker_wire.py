"""Docker's wire formats, read and written without the SDK: container JSON into ``ContainerState``,
port bindings, the framed exec stream, and the pre-start gate's script (used by ``docker.py``)."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import re
import tarfile
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

from envkit.backends.base import ContainerSpec, ContainerState, ContainerStatus, Endpoint, PortBinding, PortKey
from envkit.errors import EngineUnavailable

__all__ = ["GATE_SCRIPT", "GO_TAR", "bindings", "chain", "from_inspect", "from_listing", "gated_argv",
           "ipv4_subnets", "read_exec", "short", "unreachable"]

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


def gated_argv(spec: ContainerSpec, image_config: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The process Docker would have run (the entrypoint, then the command; the image's command is
    dropped when the blueprint sets its own entrypoint, as Docker does), or None when it cannot be
    gated: no process, or variables a POSIX shell would drop on exec (e.g. "discovery.type")."""
    entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else list(image_config.get("Entrypoint") or [])
    if spec.command is not None:
        command = list(spec.command)
    else:
        command = list(image_config.get("Cmd") or []) if spec.entrypoint is None else []
    argv = entrypoint + command
    names = [k for k, _ in spec.environment] + [e.split("=", 1)[0] for e in image_config.get("Env") or []]
    return tuple(argv) if argv and all(_SHELL_NAME.match(n) for n in names) else None


def _tar_of_empty_file(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(name))
    return buffer.getvalue()


GO_TAR = _tar_of_empty_file(".envkit-go")

def unreachable(where: str, exc: BaseException) -> EngineUnavailable:
    return EngineUnavailable(
        f"cannot reach the Docker engine at {where}: {short(exc)}\n"
        "  check that dockerd is running (`docker info`), or that DOCKER_HOST points to a live engine;\n"
        "  `bash scripts/setup.sh` installs and starts one on Debian"
    )


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (requests and urllib3 keep the cause in ``args``), and its causes."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(c, BaseException)]


_STATUSES = {"created", "running", "paused", "restarting", "exited", "dead", "removing"}
_HEALTH = {"starting", "healthy", "unhealthy"}


def _status(value: object) -> ContainerStatus:
    text = str(value or "")
    return cast(ContainerStatus, text if text in _STATUSES else "unknown")


def _addresses(networks: Mapping[str, Any] | None) -> dict[str, str]:
    return {name: str(v["IPAddress"]) for name, v in (networks or {}).items() if v and v.get("IPAddress")}


def _port_key(text: str) -> PortKey | None:
    try:
        return PortKey.parse(text)
    except ValueError:
        return None


def from_inspect(info: Mapping[str, Any]) -> ContainerState:
    state = info.get("State") or {}
    settings = info.get("NetworkSettings") or {}
    ports: dict[PortKey, Endpoint] = {}
    for text, bound in (settings.get("Ports") or {}).items():
        key = _port_key(text)
        for b in bound or []:
            # Prefer the IPv4 binding; an engine may list "::" beside "0.0.0.0".
            if key and b.get("HostPort") and (key not in ports or ":" in ports[key].host_ip):
                ports[key] = Endpoint(b.get("HostIp") or "0.0.0.0", int(b["HostPort"]))
    status = _status(state.get("Status"))
    health = (state.get("Health") or {}).get("Status")
    return ContainerState(
        id=str(info["Id"]), name=str(info.get("Name", "")).lstrip("/"), status=status,
        exit_code=int(state.get("ExitCode", -1)) if status in ("exited", "dead") else None,
        health=health if health in _HEALTH else None,
        addresses=_addresses(settings.get("Networks")), ports=ports,
        labels=dict((info.get("Config") or {}).get("Labels") or {}),
        started_at=str(state.get("StartedAt") or ""), oom_killed=bool(state.get("OOMKilled")), detailed=True,
    )


def from_listing(row: Mapping[str, Any]) -> ContainerState:
    """A row of ``GET /containers/json``: no exit code, health, start time or OOM flag in it."""
    ports: dict[PortKey, Endpoint] = {}
    for p in row.get("Ports") or []:
        if p.get("PublicPort") and ":" not in p.get("IP", ""):
            ports[PortKey(int(p["PrivatePort"]), p.get("Type", "tcp"))] = Endpoint(p.get("IP") or "0.0.0.0",
                                                                                 int(p["PublicPort"]))
    return ContainerState(
        id=str(row["Id"]), name=str((row.get("Names") or ["?"])[0]).lstrip("/"), status=_status(row.get("State")),
        exit_code=None, health=None, addresses=_addresses((row.get("NetworkSettings") or {}).get("Networks")),
        ports=ports, labels=dict(row.get("Labels") or {}), detailed=False,
    )


def bindings(ports: tuple[PortBinding, ...]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    """The exposed ports and the ``PortBindings`` of a container to create."""
    exposed: list[tuple[int, str]] = [(p.container.number, p.container.protocol) for p in ports]
    bound: dict[str, Any] = {str(p.container): (p.host_ip, p.host_port) if p.host_port else (p.host_ip,) for p in ports}
    return exposed, bound


def read_exec(sock: Any, timeout: float) -> tuple[str, bool]:
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


def ipv4_subnets(networks: list[dict[str, Any]]) -> list[ipaddress.IPv4Network]:
    """The IPv4 ranges a network listing (``GET /networks``) holds, whoever made the networks."""
    found = []
    for row in networks:
        for config in (row.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, TypeError):
                net = ipaddress.ip_network(str(config.get("Subnet")), strict=False)
                if isinstance(net, ipaddress.IPv4Network):
                    found.append(net)
    return found
