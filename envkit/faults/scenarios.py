"""Named fault scenarios (a blueprint's top-level ``faults:``), pure:

    faults:
      payments-slow: {service: payments, latency: 2s}
      db-flaky:      {service: db, reset: {after_bytes: 4096}, probability: 0.3}
      worker-down:   {service: worker, stop: true, for: 10s}

A scenario names its service and exactly one fault kind. The kind's value is its parameters (a
mapping), or its main parameter (``latency: 2s`` is ``latency=2s``; ``loss: 30`` is ``percent=30``;
``stop: true`` has none). The common parameters (``replica``, ``port``, ``direction``, ``probability``,
``peer``, ``network``, ``seed``) and ``for`` (a duration: healed after it) sit beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envkit.errors import UsageError
from envkit.faults.kinds import COMMON, KINDS, parse, parse_duration

__all__ = ["MAIN", "Scenario", "scenario"]

#: the parameter a kind's scalar value stands for (None: the kind takes a flag, ``stop: true``)
MAIN: dict[str, str | None] = {
    "latency": "latency", "bandwidth": "rate", "slow_close": "delay", "timeout": "timeout", "reset": "after_bytes",
    "slicer": "average_size", "limit_data": "bytes", "corrupt": "per_byte", "truncate": "bytes",
    "loss": "percent", "partition": "peer", "disconnect": "network", "stop": None, "kill": None, "pause": None,
    "restart": None,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    duration: float | None = None  # seconds; healed after it


def scenario(name: str, body: Any, where: str = "") -> Scenario:
    """A checked scenario; UsageError naming ``where`` (``file:line faults.NAME``) and the key."""
    at = f"{where} faults.{name}" if where else f"faults.{name}"
    if not isinstance(body, Mapping):
        raise UsageError(f"{at}: a mapping with service: and one fault kind, e.g. {{service: api, latency: 2s}}")
    if not isinstance(body.get("service"), str) or not body.get("service"):
        raise UsageError(f"{at}.service: the service to fault is required")
    kinds = [k for k in body if str(k).replace("-", "_") in KINDS]
    if len(kinds) != 1:
        found = f" (found {', '.join(map(str, kinds))})" if kinds else ""
        raise UsageError(f"{at}: name exactly one fault kind{found}; known: {', '.join(KINDS)}")
    unknown = sorted(str(k) for k in body if k not in (*kinds, "service", "for", *COMMON))
    if unknown:
        raise UsageError(f"{at}.{unknown[0]}: unknown key; beside the kind: service, for, {', '.join(COMMON)}")
    raw_kind = kinds[0]
    kind = str(raw_kind).replace("-", "_")
    value = body[raw_kind]
    params: dict[str, Any] = {k: v for k, v in body.items() if k in COMMON}
    if isinstance(value, Mapping):
        params.update({str(k): v for k, v in value.items()})
    elif value is not True and value is not None:
        main = MAIN[kind]
        if main is None or value is False:
            raise UsageError(f"{at}.{raw_kind}: write {raw_kind}: true (it takes no value)")
        params[main] = value
    duration = parse_duration(body["for"], f"faults.{name}.for") / 1000 if "for" in body else None
    try:
        parse(kind, params)
    except UsageError as exc:
        raise UsageError(f"{at}: {exc}") from None
    return Scenario(name, str(body["service"]), kind, params, duration)
