"""Docker's wire formats, read and written without the SDK: container JSON into ``ContainerState``,
port bindings, the framed exec stream, and the pre-start gate's script (used by ``docker.py``)."""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import os
import re
import tarfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from envkit.backends.base import (
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    Endpoint,
    ImageInfo,
    LogLine,
    MountSpec,
    PortBinding,
    PortKey,
)
from envkit.errors import EngineUnavailable

__all__ = ["GATE_SCRIPT", "GO_TAR", "bindings", "cause", "chain", "from_inspect", "from_listing", "gated_argv", "image_info",
           "ipv4_subnets", "log_line", "read_exec", "short", "unreachable"]

# The pre-start gate (see envkit.plan): a shell that waits for SIGWINCH or the release file, then
# becomes the service's own process with exec: same PID 1, same argv, same environment. The signal
# is the release (one API call, a few ms); the file, written just after it, is the fallback for a
# signal that came before the trap was set (WINCH is ignored by default, so an early one is harmless;
# the 0.25 s nap bounds that case). Before exec it reaps its nap and leaves WINCH ignored (the default
# action anyway), so a signal that lands just after the exec cannot reach the service; TERM/INT end a
# still-gated container.
GATE_SCRIPT = (
    "__envkit_go=; trap 'exit 143' TERM INT; trap '__envkit_go=1' WINCH; "
    'while [ -z "$__envkit_go" ] && [ ! -e /.envkit-go ]; do sleep 0.25 & wait $!; done; '
    "trap '' WINCH; kill $! 2>/dev/null; wait $! 2>/dev/null; trap - TERM INT; exec \"$@\""
)


_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def gated_argv(spec: ContainerSpec, image_config: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The process Docker would have run (the entrypoint, then the command; the image's command is
    dropped when the blueprint sets its own entrypoint, as Docker does), or None when it cannot be
    gated: no process, variables a POSIX shell would drop on exec (e.g. "discovery.type"), or a
    read-only root file system (the release's fallback file could not be written)."""
    if spec.read_only:
        return None
    entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else list(image_config.get("Entrypoint") or [])
    if spec.command is not None:
        command = list(spec.command)
    else:
        command = list(image_config.get("Cmd") or []) if spec.entrypoint is None else []
    argv = entrypoint + command
    names = [k for k, _ in spec.environment] + [e.split("=", 1)[0] for e in image_config.get("Env") or []]
    return (tuple(argv) if argv and all(_SHELL_NAME.match(n) for n in names) and "__envkit_go" not in names
            else None)


def _tar_of_empty_file(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(name))
    return buffer.getvalue()


GO_TAR = _tar_of_empty_file(".envkit-go")

def unreachable(where: str, exc: BaseException) -> EngineUnavailable:
    causes = list(chain(exc))
    if any(isinstance(c, PermissionError) for c in causes):
        advice = ("  this user may not use the engine's socket: join the docker group (`sudo usermod -aG docker "
                  "$USER`, then log in again), or point DOCKER_HOST to a rootless engine")
    else:
        advice = ("  start Docker (Linux: `sudo systemctl start docker`; macOS, Windows: open Docker Desktop) and "
                  "check with `docker info`;\n  for another engine, set DOCKER_HOST (rootless Docker: "
                  "unix://$XDG_RUNTIME_DIR/docker.sock)")
    setup = _setup_script()
    if setup:
        advice += f";\n  in this checkout of envkit, `bash {setup}` installs and starts one on Debian"
    return EngineUnavailable(f"cannot reach the Docker engine at {where}: {cause(exc)}\n{advice}")


def _setup_script() -> str | None:
    """envkit's own setup script, when envkit runs from a checkout of its repository and from inside it
    (a user of an installed envkit has no such script)."""
    repo = Path(__file__).resolve().parents[2]
    script = repo / "scripts" / "setup.sh"
    if not (script.is_file() and (repo / "pyproject.toml").is_file() and (repo / "envkit").is_dir()):
        return None
    with contextlib.suppress(ValueError, OSError):
        return os.path.relpath(script, Path.cwd().resolve()) if Path.cwd().resolve().is_relative_to(repo) else None
    return None


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def cause(exc: BaseException) -> str:
    """What went wrong underneath a client library's wrapping: the innermost system error's text
    ("Connection refused"), or the message of the peer hanging up; else the first line of ``exc``."""
    causes = list(chain(exc))
    for c in causes:
        if isinstance(c, OSError) and c.strerror:  # "Connection refused", "No such file or directory"
            return c.strerror
    for c in causes:
        if isinstance(c, ConnectionError | http.client.HTTPException) and "(" not in str(c):
            return str(c) or type(c).__name__  # "Remote end closed connection without response"
    return short(exc)


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


def _fixed(networks: Mapping[str, Any] | None) -> dict[str, str]:
    """Network -> the IPv4 address the container was made or connected with (its IPAMConfig), running or not."""
    return {name: str(v["IPAMConfig"]["IPv4Address"]) for name, v in (networks or {}).items()
            if v and (v.get("IPAMConfig") or {}).get("IPv4Address")}


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
    bindings: dict[PortKey, Endpoint] = {}
    for text, bound in ((info.get("HostConfig") or {}).get("PortBindings") or {}).items():
        key = _port_key(text)
        for b in bound or []:
            if key and str(b.get("HostPort") or "0") != "0" and key not in bindings:
                bindings[key] = Endpoint(b.get("HostIp") or "0.0.0.0", int(b["HostPort"]))
    if status == "created" and not ports:  # never started: the host ports it will publish on (chosen at create)
        ports = dict(bindings)
    health = (state.get("Health") or {}).get("Status")
    return ContainerState(
        id=str(info["Id"]), name=str(info.get("Name", "")).lstrip("/"), status=status,
        exit_code=int(state.get("ExitCode", -1)) if status in ("exited", "dead") else None,
        health=health if health in _HEALTH else None,
        addresses=_addresses(settings.get("Networks")), ports=ports,
        labels=dict((info.get("Config") or {}).get("Labels") or {}),
        started_at=str(state.get("StartedAt") or ""), oom_killed=bool(state.get("OOMKilled")), detailed=True,
        finished_at=str(state.get("FinishedAt") or "") if status in ("exited", "dead") else "",
        environment=dict(e.partition("=")[::2] for e in (info.get("Config") or {}).get("Env") or [] if "=" in e),
        mounts=_mounts(info.get("Mounts")),
        aliases=_aliases(settings.get("Networks"), str(info["Id"])), bindings=bindings,
        fixed=_fixed(settings.get("Networks")),
    )


def _aliases(networks: Mapping[str, Any] | None, container_id: str) -> dict[str, tuple[str, ...]]:
    # The engine adds the short container id as an alias of its own: left out (it comes back by itself).
    return {name: tuple(a for a in (v.get("Aliases") or ()) if not container_id.startswith(a))
            for name, v in (networks or {}).items() if v}


def _mounts(rows: Any) -> tuple[MountSpec, ...]:
    """Volumes (named and anonymous: the engine names both) and binds; tmpfs and others left out."""
    out = []
    for m in rows or []:
        if m.get("Type") == "volume" and m.get("Name"):
            out.append(MountSpec("volume", str(m["Name"]), str(m.get("Destination", "")), not m.get("RW", True)))
        elif m.get("Type") == "bind":
            out.append(MountSpec("bind", str(m.get("Source", "")), str(m.get("Destination", "")), not m.get("RW", True)))
    return tuple(sorted(out, key=lambda m: m.target))


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


_EPOCH = datetime.fromtimestamp(0, UTC)


def log_line(raw: str) -> LogLine:
    """A line of ``logs?timestamps=1``: an RFC 3339 time with nanoseconds, a space, the text."""
    stamp, _, text = raw.partition(" ")
    return LogLine(parse_time(stamp) or _EPOCH, text.rstrip("\r"))


def parse_time(stamp: str) -> datetime | None:
    """Docker's RFC 3339 times (``2024-05-01T12:00:00.123456789Z``; nanoseconds cut to microseconds)."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def image_info(row: Mapping[str, Any], containers: int) -> ImageInfo:
    """A row of ``GET /images/json``; ``containers``: how many containers use it."""
    tags = tuple(t for t in row.get("RepoTags") or [] if t and t != "<none>:<none>")
    return ImageInfo(id=str(row["Id"]), tags=tags, labels=dict(row.get("Labels") or {}),
                     created=datetime.fromtimestamp(int(row.get("Created") or 0), UTC),
                     size=int(row.get("Size") or 0), containers=containers)
