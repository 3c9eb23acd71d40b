"""The fault kinds and their parameters, pure: ``parse("latency", {"latency": "200ms", "jitter": 20})``.

Three families (docs/faults.md):

- container: ``stop``, ``kill``, ``pause``, ``restart`` (the engine's SIGNAL / PAUSE capabilities);
- network: ``disconnect`` (from its networks, or one: ``network=``; with ``peer=`` it is a partition),
  ``partition`` (from one peer service, both directions), ``loss`` (``percent``, incoming packets);
- connection (the fault proxy, per port and direction, with ``probability``): ``latency``, ``bandwidth``,
  ``slow_close``, ``timeout``, ``reset``, ``slicer``, ``limit_data``, ``corrupt``, ``truncate``.

Values come from the CLI as text (``latency=2s``) or from Python/YAML as numbers; durations take
``ms``/``s``/``m`` suffixes (a bare number is milliseconds). Bad input is a UsageError naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from envkit.errors import UsageError
from envkit.faults.toxics import (
    Bandwidth,
    Corrupt,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    ToxicKind,
    Truncate,
)

__all__ = ["CONNECTION", "CONTAINER", "KINDS", "NETWORK", "FaultSpec", "parse", "parse_duration"]

CONTAINER = ("stop", "kill", "pause", "restart")
NETWORK = ("disconnect", "partition", "loss")
COMMON = ("replica", "port", "direction", "probability", "peer", "network", "seed", "via")
VIAS = ("proxy", "iptables", "netem", "front", "disconnect")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?\s*$")


def parse_duration(value: Any, key: str) -> float:
    """Milliseconds from ``200ms``, ``2s``, ``1.5m``, ``500us`` or a bare number (ms)."""
    if isinstance(value, bool):
        raise UsageError(f"fault parameter {key!r}: a duration, not {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UsageError(f"fault parameter {key!r}: must not be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise UsageError(f"fault parameter {key!r}: {value!r} is not a duration (e.g. 200ms, 2s)")
    scale = {"us": 0.001, "µs": 0.001, "ms": 1.0, None: 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * scale


def _number(value: Any, key: str, lo: float = 0, hi: float | None = None, integer: bool = False) -> float:
    try:
        n = float(str(value).rstrip("%")) if not isinstance(value, bool) else float("nan")
    except ValueError:
        n = float("nan")
    if n != n or n < lo or (hi is not None and n > hi) or (integer and n != int(n)):
        bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise UsageError(f"fault parameter {key!r}: {value!r} is not a{'n integer' if integer else ' number'} {bounds}")
    return n


def _ms(p: Mapping[str, Any], key: str, default: float = 0) -> float:
    return parse_duration(p[key], key) if key in p else default


def _int(p: Mapping[str, Any], key: str, default: int = 0) -> int:
    return int(_number(p[key], key, integer=True)) if key in p else default


def _latency(p: Mapping[str, Any]) -> ToxicKind:
    if "latency" not in p:
        raise UsageError("fault 'latency' needs latency=<duration> (e.g. latency=200ms)")
    return Latency(ms=_ms(p, "latency"), jitter_ms=_ms(p, "jitter"))


def _bandwidth(p: Mapping[str, Any]) -> ToxicKind:
    if "rate" not in p:
        raise UsageError("fault 'bandwidth' needs rate=<KB/s>")
    return Bandwidth(kb_per_s=_number(p["rate"], "rate", lo=0.001))


def _slicer(p: Mapping[str, Any]) -> ToxicKind:
    return Slicer(average_size=max(1, _int(p, "average_size", 8)), size_variation=_int(p, "size_variation"),
                  delay_us=_ms(p, "delay") * 1000)


def _corrupt(p: Mapping[str, Any]) -> ToxicKind:
    return Corrupt(probability=_number(p.get("per_byte", 0.01), "per_byte", 0, 1))


TOXICS: dict[str, tuple[Callable[[Mapping[str, Any]], ToxicKind], tuple[str, ...]]] = {
    "latency": (_latency, ("latency", "jitter")),
    "bandwidth": (_bandwidth, ("rate",)),
    "slow_close": (lambda p: SlowClose(delay_ms=_ms(p, "delay")), ("delay",)),
    "timeout": (lambda p: Timeout(ms=_ms(p, "timeout"), after_bytes=_int(p, "after_bytes")), ("timeout", "after_bytes")),
    "reset": (lambda p: ResetPeer(ms=_ms(p, "timeout"), after_bytes=_int(p, "after_bytes")), ("timeout", "after_bytes")),
    "slicer": (_slicer, ("average_size", "size_variation", "delay")),
    "limit_data": (lambda p: LimitData(bytes=_int(p, "bytes")), ("bytes",)),
    "corrupt": (_corrupt, ("per_byte",)),
    "truncate": (lambda p: Truncate(bytes=max(1, _int(p, "bytes", 1)), idle_ms=_ms(p, "idle", 100)), ("bytes", "idle")),
}
CONNECTION = tuple(TOXICS)
KINDS = CONTAINER + NETWORK + CONNECTION
_OWN: dict[str, tuple[str, ...]] = {"stop": ("grace",), "restart": ("grace",), "kill": ("signal",),
                                    "pause": (), "disconnect": (), "partition": (), "loss": ("percent", "per")}


@dataclass(frozen=True)
class FaultSpec:
    """A checked fault: its kind, the replica (None: all), and what its family needs."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)  # as given (recorded, shown)
    replica: int | None = None
    toxic: ToxicKind | None = None  # connection faults
    directions: tuple[str, ...] = ("downstream",)
    probability: float = 1.0
    ports: tuple[int, ...] = ()  # connection faults: () = the replica's published TCP ports
    peer: str | None = None  # a peer service: only its connections/packets
    network: str | None = None  # disconnect: one blueprint network (None: all)
    percent: float = 0.0  # loss
    per: str = ""  # loss: "packet" or "connection" (attempts); "": connection when seeded, else packet
    grace: float = 10.0  # stop/restart
    signal: str = "SIGKILL"
    via: str | None = None  # the mechanism asked for (envkit.faults.rules.choose_via; None: the default)

    @property
    def family(self) -> str:
        return "container" if self.kind in CONTAINER else "network" if self.kind in NETWORK else "connection"


def parse(kind: str, params: Mapping[str, Any]) -> FaultSpec:
    spec = _parse(kind, params)
    via = params.get("via")
    if via is None or via == "":
        return spec
    if str(via) not in VIAS:
        raise UsageError(f"fault parameter 'via': one of {', '.join(VIAS)}, not {via!r}")
    return replace(spec, via=str(via))


def _parse(kind: str, params: Mapping[str, Any]) -> FaultSpec:
    kind = kind.replace("-", "_")
    if kind == "reset_peer":
        kind = "reset"
    if kind not in KINDS:
        raise UsageError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "disconnect" and params.get("peer"):
        kind = "partition"
    own = TOXICS[kind][1] if kind in TOXICS else _OWN[kind]
    unknown = sorted(set(params) - set(own) - set(COMMON))
    if unknown:
        raise UsageError(f"fault {kind!r}: unknown parameter {unknown[0]!r}; it takes {', '.join(own + COMMON)}")
    replica = _int(params, "replica") if "replica" in params else None
    if replica is not None and replica < 1:
        raise UsageError("fault parameter 'replica': replicas count from 1")
    spec = FaultSpec(kind, dict(params), replica, peer=str(params["peer"]) if params.get("peer") else None,
                     network=str(params["network"]) if params.get("network") else None)
    if kind in TOXICS:
        direction = str(params.get("direction", "downstream"))
        if direction not in ("upstream", "downstream", "both"):
            raise UsageError(f"fault parameter 'direction': upstream, downstream or both, not {direction!r}")
        ports = str(params.get("port", "")).replace(",", " ").split()
        return FaultSpec(kind, spec.params, replica, TOXICS[kind][0](params),
                         ("upstream", "downstream") if direction == "both" else (direction,),
                         _number(params.get("probability", 1.0), "probability", 0, 1),
                         tuple(int(_number(p, "port", 1, 65535, True)) for p in ports), spec.peer)
    if kind == "partition" and not spec.peer:
        raise UsageError("fault 'partition' needs peer=<service>")
    if kind == "loss":
        if "percent" not in params:
            raise UsageError("fault 'loss' needs percent=<0..100>")
        per = str(params.get("per", ""))
        if per not in ("", "packet", "connection"):
            raise UsageError(f"fault parameter 'per': packet or connection, not {per!r}")
        return FaultSpec(kind, spec.params, replica, percent=_number(params["percent"], "percent", 0, 100),
                         peer=spec.peer, per=per)
    if kind in ("stop", "restart") and "grace" in params:
        return FaultSpec(kind, spec.params, replica, grace=_ms(params, "grace") / 1000)
    if kind == "kill" and "signal" in params:
        return FaultSpec(kind, spec.params, replica, signal=str(params["signal"]))
    return spec
