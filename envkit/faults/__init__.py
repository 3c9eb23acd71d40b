"""Faults: envkit's fault proxy (a TCP proxy per faultable port, Toxiproxy's design) and its client.

    envkit/faults/proxy/     the proxy's build context: Dockerfile + the stdlib-only program
    envkit/faults/image.py   its content-hashed image tag
    envkit/faults/client.py  FaultProxyClient, for the control API on a published port
    envkit/faults/toxics.py  the toxics as typed values (Latency, ResetPeer, ...)

docs/faults.md describes the API, each toxic, and how a run wires proxies in.
"""

from __future__ import annotations

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

__all__ = [
    "CONTEXT",
    "CONTROL_PORT",
    "Bandwidth",
    "Corrupt",
    "FaultProxyClient",
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
