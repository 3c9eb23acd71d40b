"""Readers of one key's own value: its kind, bounds and names (environment names, the label namespace,
sizes, CPU counts, capabilities, allowances, host addresses), and the long form ``{value, secret}``.

Each has the ``ReadFn`` signature ``(reader, value, path)``; ``values.py`` re-exports them for ``keys.py``.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from typing import Any, cast

from envkit.blueprint.readers import ENV_NAME, Reader, parse_size, show
from envkit.blueprint.source import Key
from envkit.labels import NS
from envkit.secrets import Secret

__all__ = [
    "ALLOWANCES",
    "CAPABILITIES",
    "MAX_CPUS",
    "MAX_MEMORY",
    "MIN_CPUS",
    "MIN_MEMORY",
    "allow",
    "cap_add",
    "cpus",
    "environment",
    "host_ip",
    "kind",
    "memory",
    "replicas",
    "secret_form",
    "user_labels",
]


def kind(r: Reader, value: Any, path: Key) -> str | None:
    if value not in ("service", "job", "stub"):
        r.error(path, f"expected 'service', 'job' or 'stub', got {show(value)}")
        return None
    return cast(str, value)


def secret_form(r: Reader, value: Any, path: Key) -> tuple[Any, bool]:
    """``{value: X, secret: true}``, the long form of an environment entry or an output: (X, secret)."""
    if not isinstance(value, dict):
        return value, False
    r.keys(value, path, ("value", "secret"))
    secret = r.boolean(value["secret"], (*path, "secret")) if "secret" in value else False
    if "value" not in value:
        r.error(path, "expected {value: ..., secret: true}: 'value' is missing")
        return None, secret
    return value["value"], secret


def environment(r: Reader, value: Any, path: Key) -> tuple[tuple[str, str], ...]:
    secret_keys: list[str] = []
    if isinstance(value, dict):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            plain[key], secret = secret_form(r, item, (*path, key))
            if secret:
                secret_keys.append(key)
        value = plain
    env = r.pairs(value, path, "environment")
    service = path[1] if len(path) > 1 else "?"
    r.secrets.extend(Secret(f"{service}.{k}", v) for k, v in env if k in secret_keys)
    for key, _ in env:
        if not ENV_NAME.match(key):
            r.error((*path, key), f"invalid environment variable name {show(key)}")
    return env


def user_labels(r: Reader, value: Any, path: Key) -> tuple[tuple[str, str], ...]:
    labels = r.pairs(value, path, "labels")
    for key, _ in labels:
        if key == NS or key.startswith(NS + "."):
            r.error((*path, key), f"label '{key}' is inside envkit's own namespace '{NS}.*'; choose another")
    return tuple(kv for kv in labels if not kv[0].startswith(NS))


def replicas(r: Reader, value: Any, path: Key) -> int | None:
    return r.integer(value, path, 1, 64, "a replica count")


#: the engine's own bounds (Docker: at least 6 MiB; a limit must fit its int64), checked before it is asked
MIN_MEMORY, MAX_MEMORY = 6 * 1024**2, 2**50  # 1 PiB
MIN_CPUS, MAX_CPUS = 0.01, 1024.0


def memory(r: Reader, value: Any, path: Key) -> int | None:
    size = parse_size(value)
    if size is None:
        r.error(path, f"expected a size like 256m or 1g, got {show(value)}")
    elif not MIN_MEMORY <= size <= MAX_MEMORY:
        r.error(path, f"expected a memory limit from 6m to 1024t, got {show(value)}")
        return None
    return size


def cpus(r: Reader, value: Any, path: Key) -> float | None:
    number = _float(value)
    if number is None or not MIN_CPUS <= number <= MAX_CPUS:
        r.error(path, f"expected a number of CPUs from 0.01 to 1024, got {show(value)}")
        return None
    return number


def _float(value: Any) -> float | None:
    """A finite number, from a number or its text; None for anything else (an int too big for a float too)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > 40:
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


#: Linux capabilities (capabilities(7)), without the CAP_ prefix; ``ALL`` is every one of them
CAPABILITIES = frozenset((
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
    "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE",
    "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM", "ALL",
))


def cap_add(r: Reader, value: Any, path: Key) -> tuple[str, ...]:
    def one(v: Any, q: Key) -> str | None:
        name = r.string(v, q, "a capability name")
        if name is None:
            return None
        bare = name.upper().removeprefix("CAP_")
        if bare not in CAPABILITIES:
            close = difflib.get_close_matches(bare, sorted(CAPABILITIES), n=1)
            r.error(q, f"unknown capability {show(name)}" + (f" (did you mean '{close[0]}'?)" if close else ""))
            return None
        return name

    return tuple(r.items(value, path, "capabilities", one))


#: what a service may ask of the host only when its ``allow:`` says so (see envkit.blueprint.trust)
ALLOWANCES = ("host-paths", "docker-socket", "privileged", "capabilities", "public-ports")


def allow(r: Reader, value: Any, path: Key) -> tuple[str, ...]:
    def one(v: Any, q: Key) -> str | None:
        if v not in ALLOWANCES:
            close = difflib.get_close_matches(str(v), ALLOWANCES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; use {', '.join(ALLOWANCES)}"
            r.error(q, f"unknown allowance {show(v)}{hint}")
            return None
        return cast(str, v)

    return tuple(sorted(set(r.items(value, path, "allowances", one)), key=ALLOWANCES.index))


def host_ip(r: Reader, value: Any, path: Key) -> str | None:
    """The address a port is published on: an IP address, as the engine wants it (no host names)."""
    text = r.string(value, path, "an IP address")
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        r.error(path, f"expected an IP address such as 127.0.0.1, got {show(value)}")
        return None
