"""Faults: envkit's fault proxy (a TCP proxy per faultable port, Toxiproxy's design) and its client.

    envkit/faults/proxy/     the proxy's build context: Dockerfile + the stdlib-only program
    envkit/faults/image.py   its content-hashed image tag
    envkit/faults/client.py  FaultProxyClient, for the control API on a published port
    envkit/faults/toxics.py  the toxics as typed values (Latency, ResetPeer, ...)
    envkit/faults/kinds.py   the fault kinds and their parameters (pure)
    envkit/faults/sidecar.py helpers in a replica's network namespace: iptables one-shots, the proxy
    envkit/faults/apply.py   apply / heal / list faults on a live run
    envkit/faults/records.py the records and the timeline: labelled volumes, removed with the run
    envkit/faults/rules.py   what a namespace helper runs (seeded loss, netem) and which mechanism (pure)
    envkit/faults/follow.py  faults put back after their replica restarted (a new namespace)
    envkit/faults/front.py   connection faults without NET_ADMIN: a proxy on the service's names
    envkit/faults/session.py Environment.fault/heal/faults; scenarios.py: the blueprint's faults:

docs/faults.md describes the API, each toxic, and how a run wires proxies in.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envkit.faults.apply import FaultRecord
    from envkit.faults.client import FaultProxyClient, ProxyInfo, ProxySpec, ToxicInfo
    from envkit.faults.image import CONTEXT, CONTROL_PORT, context_hash, image_tag
    from envkit.faults.toxics import (
        Bandwidth,
        Corrupt,
        Latency,
        LimitData,
        ResetPeer,
        Slicer,
        SlowClose,
        Stream,
        Timeout,
        ToxicKind,
        Truncate,
    )

# Where each name lives: imported when first used, so that loading a blueprint (which needs only the
# proxy image's tag) does not load the client, its HTTP stack and the rest.
_HOME = {
    "FaultRecord": "apply", "FaultProxyClient": "client", "ProxyInfo": "client", "ProxySpec": "client",
    "ToxicInfo": "client", "CONTEXT": "image", "CONTROL_PORT": "image", "context_hash": "image",
    "image_tag": "image", **{name: "toxics" for name in (
        "Bandwidth", "Corrupt", "Latency", "LimitData", "ResetPeer", "Slicer", "SlowClose", "Stream", "Timeout",
        "ToxicKind", "Truncate")},
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'envkit.faults' has no attribute {name!r}")
    return getattr(import_module(f"envkit.faults.{_HOME[name]}"), name)


__all__ = [
    "CONTEXT",
    "CONTROL_PORT",
    "Bandwidth",
    "Corrupt",
    "FaultProxyClient",
    "FaultRecord",
    "Latency",
    "LimitData",
    "ProxyInfo",
    "ProxySpec",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stream",
    "Timeout",
    "ToxicInfo",
    "ToxicKind",
    "Truncate",
    "context_hash",
    "image_tag",
]
