"""Address ranges for a run's networks, taken from envkit's own pool. Pure: no engine, no I/O.

Why a pool of its own: Docker's default pools give every bridge network a /16 of 172.17-172.31 or a
/20 of 192.168.0.0/16 — 31 networks on an engine, then "could not find an available,
non-overlapping IPv4 address pool among the defaults" (the 16th shop environment, which has two
networks). A run's network holds a handful of containers, so envkit gives each one a /24 of its own
pool instead: 4096 networks in the default pool, on an engine whose daemon settings are untouched.

The setting (read when a backend is made, never at import time):

- ``ENVKIT_SUBNET_POOL``: comma-separated IPv4 ranges (default ``10.208.0.0/12``, i.e.
  10.208.0.0-10.223.255.255), or ``engine`` to let the engine choose as it does for ``docker
  network create`` (its own default pools).
- ``ENVKIT_SUBNET_SIZE``: the prefix length of each network (default 24: 254 addresses, room for large
  replica counts; 16 to 28).

Why 10.208.0.0/12: it is private (RFC 1918), outside Docker's default pools (172.17.0.0/12 and
192.168.0.0/16) and Docker Desktop's (192.168.65.0/24), outside the defaults of Kubernetes (services
10.96.0.0/12, flannel and Calico pods 10.244.0.0/16 and 192.168.0.0/16, k3s 10.42.0.0/16 and
10.43.0.0/16, Weave 10.32.0.0/12), and away from the low 10.x ranges where cloud VPCs (AWS's default
VPC is 172.31.0.0/16, Azure and GitHub runners use 10.1.0.0/16) and office VPNs usually live.

How a free one is chosen (``SubnetPool.choose``): every range the engine already has in use —
networks envkit did not make included — and every route of the engine's host is excluded; among the
rest, the search starts at a point derived from the network's name, so that processes creating
networks at the same moment rarely pick the same one. When one still does, the engine refuses the
second (an overlap), and the caller excludes that subnet and chooses again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

from envkit.errors import Conflict, EngineError, UsageError

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_SIZE",
    "OVERLAP_ATTEMPTS",
    "POOL_VAR",
    "SIZE_VAR",
    "Allocator",
    "SubnetPool",
    "allocator_from",
    "gateway",
    "parse_routes",
    "pool_from",
]

T = TypeVar("T")

POOL_VAR = "ENVKIT_SUBNET_POOL"
SIZE_VAR = "ENVKIT_SUBNET_SIZE"
DEFAULT_POOL = "10.208.0.0/12"
DEFAULT_SIZE = 24
ENGINE = "engine"  # the value of POOL_VAR that leaves the choice to the engine
SIZES = range(16, 29)  # a /28 has 14 addresses, one of them the gateway: smaller is of no use
#: how many subnets one create may find taken by others at the last moment before it gives up
OVERLAP_ATTEMPTS = 64


@dataclass(frozen=True)
class SubnetPool:
    """Ranges cut into networks of one prefix length. Candidates are numbered across the ranges in order."""

    ranges: tuple[IPv4Network, ...]
    size: int  # the prefix length of each network

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ValueError("a pool needs at least one range")
        if any(r.prefixlen > self.size for r in self.ranges):
            raise ValueError("a range is smaller than one network")

    def __str__(self) -> str:
        return f"{', '.join(map(str, self.ranges))} in /{self.size}s"

    def _count(self, r: IPv4Network) -> int:
        return 1 << (self.size - r.prefixlen)

    @property
    def capacity(self) -> int:
        """How many networks the pool holds."""
        return sum(self._count(r) for r in self.ranges)

    def subnet(self, index: int) -> IPv4Network:
        """Candidate number ``index`` (0 ≤ index < capacity)."""
        for r in self.ranges:
            if index < self._count(r):
                return IPv4Network((int(r.network_address) + (index << (32 - self.size)), self.size))
            index -= self._count(r)
        raise IndexError(index)

    def blocked(self, taken: Iterable[IPv4Network]) -> list[tuple[int, int]]:
        """The candidate numbers that overlap ``taken``, as sorted, merged, inclusive intervals."""
        shift = 32 - self.size
        spans: list[tuple[int, int]] = []
        for net in taken:
            base = 0
            for r in self.ranges:
                if net.overlaps(r):
                    low = max(int(net.network_address), int(r.network_address)) - int(r.network_address)
                    high = min(int(net.broadcast_address), int(r.broadcast_address)) - int(r.network_address)
                    spans.append((base + (low >> shift), base + (high >> shift)))
                base += self._count(r)
        merged: list[tuple[int, int]] = []
        for low, high in sorted(spans):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        return merged

    def choose(self, taken: Iterable[IPv4Network], key: str) -> IPv4Network | None:
        """A candidate that overlaps nothing in ``taken``, searched from a point derived from ``key``
        (wrapping around); None when the pool is full."""
        total = self.capacity
        start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
        blocked = self.blocked(taken)
        index = start
        for _ in range(len(blocked) + 2):  # each step jumps past one blocked interval
            span = next(((lo, hi) for lo, hi in blocked if lo <= index <= hi), None)
            if span is None:
                return self.subnet(index)
            index = (span[1] + 1) % total
        return None  # every candidate is blocked

    def in_use(self, taken: Iterable[IPv4Network]) -> int:
        """How many candidates ``taken`` blocks (for messages)."""
        return sum(hi - lo + 1 for lo, hi in self.blocked(taken))


class Allocator:
    """A pool and the subnets this process has chosen but perhaps not created yet (so that its own
    threads, creating a run's networks in parallel, do not choose the same one)."""

    def __init__(self, pool: SubnetPool) -> None:
        self.pool = pool
        self._pending: set[IPv4Network] = set()
        self._lock = threading.Lock()

    def allocate(self, key: str, taken: Callable[[], list[IPv4Network]], create: Callable[[IPv4Network], T],
                 name_taken: Callable[[], bool]) -> T:
        """``create(subnet)`` on a free subnet: ``taken()`` says what is in use now (asked again before
        each choice); a ``Conflict`` from ``create`` is an overlap with a network made at the same moment
        unless ``name_taken()`` — then the name is the conflict, and it is raised as it is."""
        pool = self.pool
        refused: list[IPv4Network] = []
        for _ in range(OVERLAP_ATTEMPTS):
            listed = taken()
            with self._lock:
                in_use = [*listed, *refused, *self._pending]
                subnet = pool.choose(in_use, key)
                if subnet is not None:
                    self._pending.add(subnet)
            if subnet is None:
                raise EngineError(
                    f"create network {key}: no free /{pool.size} subnet left in {POOL_VAR} "
                    f"({', '.join(map(str, pool.ranges))}: {pool.in_use(in_use)} of {pool.capacity} in use); "
                    f"remove runs (envkit ls, envkit down) or set a larger pool in {POOL_VAR}")
            try:
                return create(subnet)
            except Conflict:
                if name_taken():
                    raise
                refused.append(subnet)  # another process took it a moment ago: choose again without it
            finally:
                with self._lock:
                    self._pending.discard(subnet)
        raise EngineError(f"create network {key}: {OVERLAP_ATTEMPTS} subnets in a row were taken by others "
                          f"as they were chosen (last: {refused[-1]})")


def allocator_from(environment: Mapping[str, str]) -> Allocator | None:
    """An Allocator for the pool the settings name; None for ``ENVKIT_SUBNET_POOL=engine``."""
    pool = pool_from(environment)
    return None if pool is None else Allocator(pool)


def gateway(subnet: IPv4Network) -> IPv4Address:
    """The network's first address, as engines give bridges by default."""
    return subnet.network_address + 1


def _parse_range(text: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise UsageError(f"{POOL_VAR}: '{text.strip()}' is not an IPv4 network like {DEFAULT_POOL} ({exc})") from None
    if not isinstance(net, IPv4Network):
        raise UsageError(f"{POOL_VAR}: '{text.strip()}' is not an IPv4 network (IPv6 pools are not supported)")
    return net


def pool_from(environment: Mapping[str, str]) -> SubnetPool | None:
    """The pool the settings in ``environment`` name; None for ``ENVKIT_SUBNET_POOL=engine``."""
    pool_text = environment.get(POOL_VAR, "").strip() or DEFAULT_POOL
    if pool_text.lower() == ENGINE:
        return None
    size_text = environment.get(SIZE_VAR, "").strip().lstrip("/") or str(DEFAULT_SIZE)
    if not size_text.isdigit() or int(size_text) not in SIZES:
        raise UsageError(f"{SIZE_VAR}: '{size_text}' is not a prefix length from {SIZES.start} to {SIZES.stop - 1}")
    size = int(size_text)
    ranges = tuple(_parse_range(part) for part in pool_text.split(",") if part.strip())
    for i, r in enumerate(ranges):
        if r.prefixlen > size:
            raise UsageError(f"{POOL_VAR}: {r} is smaller than one /{size} network ({SIZE_VAR})")
        clash = next((o for o in ranges[:i] if o.overlaps(r)), None)
        if clash is not None:
            raise UsageError(f"{POOL_VAR}: {r} overlaps {clash}")
    return SubnetPool(ranges, size)


def parse_routes(text: str) -> list[IPv4Network]:
    """The destinations of a Linux routing table (the text of ``/proc/net/route``), the default route
    left out: a network of the pool must not hide a range the host already reaches another way."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            # Little-endian hex, as the kernel writes it.
            address = IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
            mask = IPv4Address(int.from_bytes(bytes.fromhex(fields[7]), "little"))
            net = IPv4Network(f"{address}/{mask}", strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:
            routes.append(net)
    return routes
