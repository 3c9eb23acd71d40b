"""What a blueprint may ask of the host only when it says so: safe by default.

A service that reaches outside the blueprint's folder (a bind mount or a build context elsewhere), mounts
the container engine's socket, runs privileged, adds capabilities or publishes a port on an address other
than loopback must list that in its ``allow:`` (``values.ALLOWANCES``). Without it the blueprint is
refused, with the key path and the allowance to add; with it, the use is a *warning* that
``envkit validate`` prints (carried as data on ``Blueprint.warnings``; the core prints nothing). An
allowance that nothing uses is a warning too, so that ``allow:`` lists stay honest.

Runs on the model after normalisation: paths are resolved there (symlinks followed), so a link inside the
folder that points outside it counts as outside.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from envkit.blueprint.model import Blueprint, Service
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem

__all__ = ["check", "engine_sockets"]

#: where container engines listen, besides $DOCKER_HOST's socket and the user's runtime folder
_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock", "/var/run/podman/podman.sock",
            "/run/containerd/containerd.sock", "/run/user/{uid}/docker.sock", "/run/user/{uid}/podman/podman.sock",
            "~/.docker/run/docker.sock", "~/.colima/default/docker.sock", "~/.rd/docker.sock")
_SOCKET_NAMES = ("docker.sock", "podman.sock", "containerd.sock")


def engine_sockets(env: Mapping[str, str]) -> set[Path]:
    """The engine sockets of this machine (resolved), from the usual places and ``DOCKER_HOST``."""
    found = {p.replace("{uid}", str(os.getuid())) for p in _SOCKETS}
    host = env.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        found.add(host[len("unix://"):])
    if env.get("XDG_RUNTIME_DIR"):
        found.update(os.path.join(env["XDG_RUNTIME_DIR"], n) for n in ("docker.sock", "podman/podman.sock"))
    out = set()
    for text in found:
        path = Path(text).expanduser()
        try:
            if path.exists():
                out.add(path.resolve())
        except OSError:  # an unreadable folder on the way: not a socket this user can reach
            continue
    return out


def _is_socket(path: Path, sockets: set[Path]) -> bool:
    if path in sockets:
        return True
    try:
        return stat.S_ISSOCK(path.stat().st_mode) and path.name in _SOCKET_NAMES
    except OSError:
        return False


def _holds_socket(path: Path, sockets: set[Path]) -> bool:
    """A folder that has an engine socket somewhere below it (``/``, ``/var/run``, ``/run``)."""
    return path.is_dir() and any(s.is_relative_to(path) for s in sockets)


def _shown(path: Path) -> str:
    """A host path as a message shows it: relative to the working folder when it is inside it."""
    try:
        cwd = Path.cwd()
    except OSError:
        return str(path)
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) and path != cwd else str(path)


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:  # reported by the reader of host_ip
        return True


def check(bp: Blueprint, marks: Marks, env: Mapping[str, str]) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings): each host access a service asks for without its allowance, and each one allowed."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    folder = bp.directory.resolve()
    sockets = engine_sockets(env)
    for svc in bp.services.values():
        base: Key = ("services", svc.name)
        used: set[str] = set()

        def need(allowance: str, path: Key, what: str, svc: Service = svc, used: set[str] = used) -> None:
            used.add(allowance)
            if allowance in svc.allow:
                warnings.append(marks.problem(path, f"{what}; allowed by 'allow: [{allowance}]'"))
            else:
                problems.append(marks.problem(path, f"{what}; add 'allow: [{allowance}]' to service "
                                                    f"'{svc.name}' to permit it"))

        if svc.build is not None and svc.kind != "stub" and not svc.build.context.is_relative_to(folder):
            long_form = (*base, "build", "context") in marks.positions
            need("host-paths", (*base, "build", "context") if long_form else (*base, "build"),
                 f"build context {_shown(svc.build.context)} is outside the blueprint's folder")
        for i, mount in enumerate(svc.volumes):
            if mount.type != "bind":
                continue
            at = mount.at or (*base, "volumes", i)
            source = Path(mount.source)
            if _is_socket(source, sockets):
                need("docker-socket", at, f"bind mount of the container engine's socket {_shown(source)} "
                                          "(root on the host for whoever reaches it)")
                continue
            if _holds_socket(source, sockets):
                need("docker-socket", at, f"bind mount of {_shown(source)}, which holds the container engine's socket")
            if not source.is_relative_to(folder):
                whole = " (the host's whole file system)" if source == Path(source.anchor) else ""
                need("host-paths", at, f"bind mount of {_shown(source)}{whole} is outside the blueprint's folder")
        if svc.privileged:
            need("privileged", (*base, "privileged"), "privileged mode (every device and capability of the host)")
        if svc.cap_add:
            need("capabilities", (*base, "cap_add"), f"added capabilities {', '.join(svc.cap_add)}")
        for i, port in enumerate(svc.ports):
            if not _loopback(port.host_ip):
                need("public-ports", port.at or (*base, "ports", i),
                     f"port {port.container}/{port.protocol} published on {port.host_ip}, reachable from "
                     "other machines (the default is 127.0.0.1)")
        for allowance in svc.allow:
            if allowance not in used:
                warnings.append(marks.problem((*base, "allow"), f"'{allowance}' is allowed but nothing needs it"))
    return problems, warnings
