"""The toxics the fault proxy knows, as typed values: ``Latency(ms=300, jitter_ms=50)``.

Each kind names its attributes in envkit's units (the field names say them); ``attributes()`` gives
the proxy's wire form (Toxiproxy's names and units). docs/faults.md describes what each one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "Bandwidth",
    "Corrupt",
    "Latency",
    "LimitData",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stream",
    "Timeout",
    "ToxicKind",
    "Truncate",
]

Stream = Literal["upstream", "downstream"]
"""upstream: client → service; downstream: service → client (Toxiproxy's terms)."""


@dataclass(frozen=True)
class ToxicKind:
    type: ClassVar[str]

    def attributes(self) -> Mapping[str, float]:
        raise NotImplementedError


@dataclass(frozen=True)
class Latency(ToxicKind):
    """Each chunk arrives ``ms`` ± ``jitter_ms`` after it was sent."""

    type: ClassVar[str] = "latency"
    ms: float
    jitter_ms: float = 0

    def attributes(self) -> Mapping[str, float]:
        return {"latency": self.ms, "jitter": self.jitter_ms}


@dataclass(frozen=True)
class Bandwidth(ToxicKind):
    """At most ``kb_per_s`` kilobytes (1000 bytes) a second."""

    type: ClassVar[str] = "bandwidth"
    kb_per_s: float

    def attributes(self) -> Mapping[str, float]:
        return {"rate": self.kb_per_s}


@dataclass(frozen=True)
class SlowClose(ToxicKind):
    """The end of the stream (FIN) is passed on ``delay_ms`` late."""

    type: ClassVar[str] = "slow_close"
    delay_ms: float

    def attributes(self) -> Mapping[str, float]:
        return {"delay": self.delay_ms}


@dataclass(frozen=True)
class Timeout(ToxicKind):
    """After ``after_bytes`` (0: at once) nothing more passes; the connection is closed ``ms`` later
    (0: never, until healed — then the held data flows on)."""

    type: ClassVar[str] = "timeout"
    ms: float = 0
    after_bytes: int = 0

    def attributes(self) -> Mapping[str, float]:
        return {"timeout": self.ms, "after_bytes": self.after_bytes}


@dataclass(frozen=True)
class ResetPeer(ToxicKind):
    """The first byte past ``after_bytes`` makes the connection reset (RST both ways) ``ms`` later."""

    type: ClassVar[str] = "reset_peer"
    ms: float = 0
    after_bytes: int = 0

    def attributes(self) -> Mapping[str, float]:
        return {"timeout": self.ms, "after_bytes": self.after_bytes}


@dataclass(frozen=True)
class Slicer(ToxicKind):
    """Data is cut into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay_us`` apart."""

    type: ClassVar[str] = "slicer"
    average_size: int
    size_variation: int = 0
    delay_us: float = 0

    def attributes(self) -> Mapping[str, float]:
        return {"average_size": self.average_size, "size_variation": self.size_variation, "delay": self.delay_us}


@dataclass(frozen=True)
class LimitData(ToxicKind):
    """Exactly ``bytes`` pass, then the connection is closed (FIN)."""

    type: ClassVar[str] = "limit_data"
    bytes: int

    def attributes(self) -> Mapping[str, float]:
        return {"bytes": self.bytes}


@dataclass(frozen=True)
class Corrupt(ToxicKind):
    """Each byte has one bit flipped with ``probability``."""

    type: ClassVar[str] = "corrupt"
    probability: float

    def attributes(self) -> Mapping[str, float]:
        return {"probability": self.probability}


@dataclass(frozen=True)
class Truncate(ToxicKind):
    """Every burst loses its last ``bytes``: they are dropped when the stream ends or idles ``idle_ms``,
    and the connection is closed then (a short message, then EOF)."""

    type: ClassVar[str] = "truncate"
    bytes: int = 1
    idle_ms: float = 100

    def attributes(self) -> Mapping[str, float]:
        return {"bytes": self.bytes, "idle": self.idle_ms}
