"""A typed client for the fault proxy's control API (docs/faults.md), over the standard library.

    proxy = FaultProxyClient(port=published_control_port)      # 127.0.0.1 by default
    proxy.add_toxic("db", Latency(ms=300), stream="downstream")
    ...
    proxy.heal("db")                                            # no toxic, enabled: plain forwarding

Every failure is a ``FaultError``: ``status`` is the proxy's HTTP status, 0 when it does not answer.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from envkit.errors import FaultError
from envkit.faults.toxics import Stream, ToxicKind
from envkit.text import duration

__all__ = ["FaultProxyClient", "ProxyInfo", "ProxySpec", "ToxicInfo"]


@dataclass(frozen=True)
class ToxicInfo:
    name: str
    type: str
    stream: Stream
    toxicity: float
    attributes: Mapping[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToxicInfo:
        return cls(str(data["name"]), str(data["type"]), cast(Stream, data["stream"]), float(data["toxicity"]),
                   dict(data.get("attributes") or {}))


@dataclass(frozen=True)
class ProxySpec:
    """A proxy to create: ``listen`` and ``upstream`` are ``host:port`` (listen port 0: any free one)."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled}


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...]
    active_connections: int
    total_connections: int

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        conns = data.get("connections") or {}
        return cls(str(data["name"]), str(data["listen"]), str(data["upstream"]), bool(data["enabled"]),
                   tuple(ToxicInfo.from_json(t) for t in data.get("toxics") or ()),
                   int(conns.get("active", 0)), int(conns.get("total", 0)))


def _path(proxy: str, *rest: str) -> str:
    return "/proxies/" + "/".join(quote(part, safe="") for part in (proxy, *rest))


class FaultProxyClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"FaultProxyClient({self.host}:{self.port})"

    # -- the proxy process
    def version(self) -> Mapping[str, Any]:
        """``{"version": ..., "seed": ...}``: the seed replays toxicity, jitter and corruption choices."""
        return cast(Mapping[str, Any], self._call("GET", "/version", what="version"))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the control API answers (a container just started); FaultError after ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                self.version()
                return
            except FaultError as exc:
                if exc.status or time.monotonic() + delay > deadline:
                    raise FaultError(f"fault proxy at {self.host}:{self.port} not ready after {duration(timeout)}: {exc}",
                                     exc.status) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def reset(self) -> None:
        """Heal everything: every proxy enabled, every toxic removed."""
        self._call("POST", "/reset", what="reset")

    # -- proxies
    def proxies(self) -> dict[str, ProxyInfo]:
        data = self._call("GET", "/proxies", what="list proxies")
        return {name: ProxyInfo.from_json(p) for name, p in cast(Mapping[str, Any], data).items()}

    def proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("GET", _path(name), what=f"proxy {name!r}", proxy=name))

    def create(self, spec: ProxySpec) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("POST", "/proxies", spec.as_json(), what=f"create proxy {spec.name!r}",
                                              proxy=spec.name))

    def populate(self, specs: Sequence[ProxySpec]) -> list[ProxyInfo]:
        """Create each proxy, replacing one of the same name."""
        data = self._call("POST", "/populate", [s.as_json() for s in specs], what="populate")
        return [ProxyInfo.from_json(p) for p in cast(Mapping[str, Any], data)["proxies"]]

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        """Disabled is an outage: connections are refused and live ones closed. Enabled listens again,
        on the same address."""
        return self._update(name, {"enabled": enabled}, "enable" if enabled else "disable")

    def set_upstream(self, name: str, upstream: str) -> ProxyInfo:
        """New connections go to ``upstream`` (host:port); live ones stay where they are."""
        return self._update(name, {"upstream": upstream}, "re-point")

    def _update(self, name: str, body: Mapping[str, object], what: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("POST", _path(name), body, what=f"{what} proxy {name!r}", proxy=name))

    def delete(self, name: str) -> None:
        self._call("DELETE", _path(name), what=f"delete proxy {name!r}", proxy=name)

    # -- toxics
    def toxics(self, proxy: str) -> list[ToxicInfo]:
        data = self._call("GET", _path(proxy, 'toxics'), what=f"toxics of {proxy!r}", proxy=proxy)
        return [ToxicInfo.from_json(t) for t in cast(Sequence[Mapping[str, Any]], data)]

    def add_toxic(self, proxy: str, kind: ToxicKind, stream: Stream = "downstream", toxicity: float = 1.0,
                  name: str | None = None) -> ToxicInfo:
        """Add a toxic on one direction; it applies to each connection with probability ``toxicity``
        (rolled once per connection), to live connections as well as new ones. The default name is
        ``<type>_<stream>``."""
        body: dict[str, object] = {"type": kind.type, "stream": stream, "toxicity": toxicity,
                                   "attributes": dict(kind.attributes())}
        if name is not None:
            body["name"] = name
        label = name or f"{kind.type}_{stream}"
        data = self._call("POST", _path(proxy, 'toxics'), body, what=f"add toxic {label!r} to {proxy!r}",
                          proxy=proxy, toxic=label)
        return ToxicInfo.from_json(data)

    def update_toxic(self, proxy: str, name: str, kind: ToxicKind | None = None,
                     toxicity: float | None = None) -> ToxicInfo:
        """Change a toxic's attributes (``kind`` must be of its type) or toxicity; connections re-roll."""
        body: dict[str, object] = {}
        if kind is not None:
            body["type"] = kind.type
            body["attributes"] = dict(kind.attributes())
        if toxicity is not None:
            body["toxicity"] = toxicity
        data = self._call("POST", _path(proxy, 'toxics', name), body, what=f"update toxic {name!r} of {proxy!r}",
                          proxy=proxy, toxic=name)
        return ToxicInfo.from_json(data)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", _path(proxy, 'toxics', name), what=f"remove toxic {name!r} of {proxy!r}",
                   proxy=proxy, toxic=name)

    def heal(self, proxy: str) -> ProxyInfo:
        """Undo every fault on one proxy: its toxics removed (live connections forward plainly again), and
        enabled on its address."""
        self._call("DELETE", _path(proxy, 'toxics'), what=f"heal proxy {proxy!r}", proxy=proxy)
        return self.set_enabled(proxy, True)

    # -- HTTP
    def _call(self, method: str, path: str, body: object = None, *, what: str, proxy: str = "",
              toxic: str = "") -> Any:
        where = f"fault proxy at {self.where}"
        payload = None if body is None else json.dumps(body).encode()
        try:
            status, raw = self._send(method, path, payload)
        except (OSError, http.client.HTTPException) as exc:
            raise FaultError(f"{where} does not answer ({what}): {exc or type(exc).__name__}", 0, proxy, toxic) from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise FaultError(f"{where}: {what}: not a JSON answer (HTTP {status})", status, proxy, toxic) from None
        if status >= 400:
            reason = data.get("error") if isinstance(data, dict) else None
            raise FaultError(f"{where}: {what}: {reason or f'HTTP {status}'}", status, proxy, toxic)
        return data

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _send(self, method: str, path: str, payload: bytes | None) -> tuple[int, bytes]:
        """One request: (HTTP status, body). The transport: a subclass may reach the API another way
        (``envkit.faults.sidecar.ExecProxyClient``: through ``exec`` in the proxy's container)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
