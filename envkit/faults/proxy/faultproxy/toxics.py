"""Toxics: what a fault does to the bytes of one direction of one connection.

A ``Toxic`` is the configured fault (shared by every connection of a proxy). When a connection meets
it, the connection rolls its ``toxicity`` once and, if the toxic applies, attaches an ``Effect``: the
per-connection state (bytes counted, timers) that the relay feeds each chunk through, in the order the
toxics were added. An effect never buffers more than one chunk (truncate: ``bytes``); to stall, it
stops taking chunks, so the bounded channel in front of it fills and the kernel applies back-pressure.

Attribute names and units are Toxiproxy's where Toxiproxy has the toxic (latency/jitter/timeout/delay
in ms, slicer delay in µs, bandwidth in KB/s with KB = 1000 bytes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["KINDS", "STREAMS", "Effect", "Emit", "LinkControl", "Toxic", "ToxicError", "make_toxic"]

STREAMS = ("upstream", "downstream")

Emit = Callable[[bytes, float], Awaitable[None]]


class ToxicError(ValueError):
    """A toxic definition the control API refuses (HTTP 400)."""


class LinkControl(Protocol):
    """What an effect may ask of the link it is attached to (implemented by relay.Link)."""

    def now(self) -> float: ...
    def attached(self, effect: Effect) -> bool: ...
    async def sleep(self, effect: Effect, deadline: float | None) -> bool:
        """Wait until ``deadline`` (None: forever) or until the effect is detached; True if still attached."""
    def close(self, reset: bool) -> None:
        """Close the whole connection after what was emitted has reached the peer (reset: RST, else FIN)."""
    def spawn(self, effect: Effect, work: Awaitable[None]) -> None:
        """Run ``work`` until the effect is detached or the connection ends."""


# type -> {attribute: default}; every attribute is a number >= 0.
KINDS: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0, "after_bytes": 0},
    "reset_peer": {"timeout": 0, "after_bytes": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "corrupt": {"probability": 0},
    "truncate": {"bytes": 1, "idle": 100},
}
_INTEGERS = {"after_bytes", "bytes", "average_size", "size_variation"}


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": dict(self.attributes)}

    def effect(self, link: LinkControl, rng: random.Random) -> Effect:
        return _EFFECTS[self.type](self, link, rng)


def _number(where: str, value: object, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ToxicError(f"{where} must be a number >= 0, not {value!r}")
    if integer and value != int(value):
        raise ToxicError(f"{where} must be a whole number, not {value!r}")
    return int(value) if integer or value == int(value) else float(value)


def make_toxic(body: object, base: Toxic | None = None) -> Toxic:
    """Validate a toxic from its JSON; with ``base``, ``body`` updates it (attributes merge)."""
    if not isinstance(body, dict):
        raise ToxicError("a toxic is a JSON object")
    allowed = {"name", "type", "stream", "toxicity", "attributes"}
    if unknown := sorted(set(body) - allowed):
        raise ToxicError(f"unknown toxic field(s): {', '.join(unknown)}")
    kind = body.get("type", base.type if base else None)
    if kind not in KINDS:
        raise ToxicError(f"unknown toxic type {kind!r} (known: {', '.join(KINDS)})")
    assert isinstance(kind, str)
    if base and kind != base.type:
        raise ToxicError("a toxic's type cannot change; remove it and add another")
    stream = body.get("stream", base.stream if base else "downstream")
    if stream not in STREAMS:
        raise ToxicError(f"stream must be 'upstream' or 'downstream', not {stream!r}")
    assert isinstance(stream, str)
    toxicity = _number("toxicity", body.get("toxicity", base.toxicity if base else 1.0), False)
    if toxicity > 1:
        raise ToxicError(f"toxicity is a probability between 0 and 1, not {toxicity!r}")
    name = body.get("name", base.name if base else f"{kind}_{stream}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ToxicError(f"a toxic's name is a non-empty string without '/', not {name!r}")
    given = body.get("attributes", {})
    if not isinstance(given, dict):
        raise ToxicError("attributes is a JSON object")
    defaults = KINDS[kind]
    if unknown := sorted(set(given) - set(defaults)):
        raise ToxicError(f"{kind} has no attribute(s) {', '.join(unknown)} (it has: {', '.join(defaults)})")
    attributes = {**defaults, **(base.attributes if base else {})}
    for key, value in given.items():
        attributes[key] = _number(f"{kind}.{key}", value, key in _INTEGERS)
    if kind == "bandwidth" and attributes["rate"] <= 0:
        raise ToxicError("bandwidth.rate (KB/s) must be > 0")
    if kind == "corrupt" and attributes["probability"] > 1:
        raise ToxicError("corrupt.probability is between 0 and 1")
    if kind == "slicer" and attributes["average_size"] < 1:
        raise ToxicError("slicer.average_size must be >= 1")
    return Toxic(name, kind, stream, float(toxicity), attributes)


class Effect:
    """One toxic attached to one direction of one connection. The default passes everything through."""

    def __init__(self, toxic: Toxic, link: LinkControl, rng: random.Random) -> None:
        self.toxic = toxic
        self.link = link
        self.rng = rng
        self.attr = toxic.attributes

    def start(self) -> None:
        """Called once, when the effect is attached (at connect, or when the toxic is added)."""

    def detach(self) -> bytes:
        """Called when the toxic is removed; returns bytes it held back, to be forwarded first."""
        return b""

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        await emit(data, at)

    async def eof(self) -> None:
        """The source ended; returns when the end may be passed on."""

    async def hold(self) -> None:
        """Stall until the toxic is removed (or the connection is closed, which cancels this)."""
        await self.link.sleep(self, None)


class _Latency(Effect):
    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        jitter = self.attr["jitter"]
        delay = self.attr["latency"] + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        # From the chunk's arrival, not from now: a stream is delayed, not slowed down (as Toxiproxy).
        await self.link.sleep(self, at + max(0.0, delay) / 1000)
        await emit(data, at)


class _Bandwidth(Effect):
    def start(self) -> None:
        self.free = self.link.now()

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        rate = self.attr["rate"] * 1000  # bytes per second
        piece = max(1, int(rate / 20))  # 50 ms worth, so a big chunk does not arrive in one burst
        for i in range(0, len(data), piece):
            part = data[i:i + piece]
            self.free = max(self.free, self.link.now()) + len(part) / rate
            if not await self.link.sleep(self, self.free):
                await emit(data[i:], at)
                return
            await emit(part, at)


class _SlowClose(Effect):
    async def eof(self) -> None:
        await self.link.sleep(self, self.link.now() + self.attr["delay"] / 1000)


class _Timeout(Effect):
    """Stops forwarding (after ``after_bytes``); closes the connection ``timeout`` ms later (0: never).

    Toxiproxy drops what arrives meanwhile; this holds it back instead, so that removing the toxic lets
    the stalled stream continue intact (as after a real stall), and the kernel's buffers bound the wait.
    """

    def start(self) -> None:
        self.passed = 0
        self.holding = False
        if not self.attr["after_bytes"]:
            self._take_hold()

    def _take_hold(self) -> None:
        self.holding = True
        if self.attr["timeout"]:
            self.link.spawn(self, self._close_later(self.link.now() + self.attr["timeout"] / 1000))

    async def _close_later(self, deadline: float) -> None:
        if await self.link.sleep(self, deadline):
            self.link.close(reset=False)

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        if not self.holding:
            take = min(len(data), int(self.attr["after_bytes"]) - self.passed)
            self.passed += take
            if self.passed >= self.attr["after_bytes"]:
                self._take_hold()
            await emit(data[:take], at)
            data = data[take:]
        if data:
            await self.hold()
            await emit(data, at)

    async def eof(self) -> None:
        if self.holding:
            await self.hold()


class _ResetPeer(Effect):
    """After ``after_bytes`` have passed, the next byte triggers it: ``timeout`` ms later, RST both ways."""

    def start(self) -> None:
        self.passed = 0

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        take = min(len(data), int(self.attr["after_bytes"]) - self.passed)
        if take:
            self.passed += take
            await emit(data[:take], at)
            data = data[take:]
        if data:
            if await self.link.sleep(self, self.link.now() + self.attr["timeout"] / 1000):
                self.link.close(reset=True)
                await self.hold()
            await emit(data, at)


class _Slicer(Effect):
    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        average, variation = int(self.attr["average_size"]), int(self.attr["size_variation"])
        i = 0
        while i < len(data):
            size = max(1, average + (self.rng.randint(-variation, variation) if variation else 0))
            await emit(data[i:i + size], at)
            i += size
            if i < len(data) and not await self.link.sleep(self, self.link.now() + self.attr["delay"] / 1e6):
                await emit(data[i:], at)
                return


class _LimitData(Effect):
    def start(self) -> None:
        self.passed = 0
        if not self.attr["bytes"]:
            self.link.close(reset=False)

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        take = min(len(data), int(self.attr["bytes"]) - self.passed)
        self.passed += take
        if take:
            await emit(data[:take], at)
        if self.passed >= self.attr["bytes"]:
            self.link.close(reset=False)
            await self.hold()
            await emit(data[take:], at)


class _Corrupt(Effect):
    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        p = self.attr["probability"]
        if p > 0 and data:
            out = bytearray(data)
            if p >= 1:
                for i in range(len(out)):
                    out[i] ^= 1 << self.rng.randrange(8)
            else:
                # Geometric gaps between corrupted bytes: cost follows the corruptions, not the bytes.
                log_q = math.log(1 - p)
                i = int(math.log(1 - self.rng.random()) / log_q)
                while i < len(out):
                    out[i] ^= 1 << self.rng.randrange(8)
                    i += 1 + int(math.log(1 - self.rng.random()) / log_q)
            data = bytes(out)
        await emit(data, at)


class _Truncate(Effect):
    """Every burst loses its last ``bytes`` bytes: they are held back, and dropped when the stream ends or
    stays idle for ``idle`` ms, which also closes the connection (the reader sees a short message, then EOF)."""

    def start(self) -> None:
        self.held = b""
        self.last = self.link.now()
        self.watching = False

    def detach(self) -> bytes:
        held, self.held = self.held, b""
        return held

    async def feed(self, data: bytes, at: float, emit: Emit) -> None:
        keep = int(self.attr["bytes"])
        buf = self.held + data
        out, self.held = (buf[:-keep], buf[-keep:]) if keep else (buf, b"")
        self.last = self.link.now()
        if self.held and not self.watching:
            self.watching = True
            self.link.spawn(self, self._watch())
        if out:
            await emit(out, at)

    async def _watch(self) -> None:
        while await self.link.sleep(self, self.last + self.attr["idle"] / 1000):
            if self.link.now() >= self.last + self.attr["idle"] / 1000:
                self.held = b""
                self.link.close(reset=False)
                return

    async def eof(self) -> None:
        self.held = b""


_EFFECTS: dict[str, type[Effect]] = {
    "latency": _Latency,
    "bandwidth": _Bandwidth,
    "slow_close": _SlowClose,
    "timeout": _Timeout,
    "reset_peer": _ResetPeer,
    "slicer": _Slicer,
    "limit_data": _LimitData,
    "corrupt": _Corrupt,
    "truncate": _Truncate,
}
