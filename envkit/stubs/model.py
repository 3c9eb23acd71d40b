"""The typed form of a service's ``stub:`` key (docs/stubs.md), and the JSON the stub server reads.

Built by ``envkit.blueprint.stub_values`` from the tables ``STUB*`` in ``envkit/blueprint/keys.py``.
``StubDef.config()`` is what the stub's container gets in ``ENVKIT_STUB_CONFIG``; the server's own
logic (``envkit/stubs/server/stubserver/routes.py``) documents that JSON.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_VAR", "DEFAULT_PORT", "StubDef", "StubResponse", "StubRoute", "StubTls"]

Key = tuple[str | int, ...]
CONFIG_VAR = "ENVKIT_STUB_CONFIG"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class StubResponse:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    json: str | None = None  # the JSON body (serialised), a template in every string
    text: str | None = None  # a text body, a template
    data: bytes | None = None  # a file's bytes, sent as they are
    delay: tuple[float, float] | None = None  # seconds: fixed (low == high) or random within
    fault: str | None = None  # envkit.stubs.server.stubserver.routes.FAULTS
    source: Path | None = field(default=None, compare=False)  # the file ``data`` was read from
    at: Key = field(default=(), compare=False)

    def blueprint(self, base: Path) -> dict[str, Any]:
        """The response as the blueprint writes it (``envkit export`` carries it in ``x-envkit``)."""
        out: dict[str, Any] = {"status": self.status}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.json is not None:
            out["json"] = json.loads(self.json)
        elif self.text is not None:
            out["body"] = self.text
        elif self.source is not None:
            out["file"] = os.path.relpath(self.source, base)
        if self.delay:
            out["delay"] = list(self.delay)
        if self.fault:
            out["fault"] = self.fault
        return out

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.json is not None:
            out["json"] = json.loads(self.json)
        elif self.text is not None:
            out["text"] = self.text
        elif self.data is not None:
            out["b64"] = base64.b64encode(self.data).decode()
        if self.delay:
            out["delay"] = list(self.delay)
        if self.fault:
            out["fault"] = self.fault
        return out


@dataclass(frozen=True)
class StubRoute:
    method: str  # upper case, or ANY
    path: str  # /charges/{id}; `*` one segment, a final `**` the rest
    responses: tuple[StubResponse, ...]
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None  # JSON object {dotted field: value} the request's JSON body must hold
    cycle: bool = False  # ordered responses start over after the last (else the last repeats)
    name: str | None = None
    scenario: str | None = None  # the state machine ``state``/``set_state`` refer to (None: "default")
    state: str | None = None  # answers only while the scenario is in this state
    set_state: str | None = None  # once it answers, the scenario moves to this state
    at: Key = field(default=(), compare=False)

    def _state(self) -> dict[str, str]:
        return {k: v for k, v in (("scenario", self.scenario), ("state", self.state), ("set_state", self.set_state))
                if v is not None}

    def blueprint(self, base: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path,
                               "responses": [r.blueprint(base) for r in self.responses]}
        match: dict[str, Any] = {}
        if self.query:
            match["query"] = dict(self.query)
        if self.headers:
            match["headers"] = dict(self.headers)
        if self.body:
            match["body"] = json.loads(self.body)
        if match:
            out["match"] = match
        if self.cycle:
            out["cycle"] = True
        if self.name:
            out["name"] = self.name
        return {**out, **self._state()}

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path,
                               "responses": [r.config() for r in self.responses], **self._state()}
        if self.query:
            out["query"] = dict(self.query)
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body:
            out["body"] = json.loads(self.body)
        if self.cycle:
            out["cycle"] = True
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class StubTls:
    """``tls:`` of a stub: HTTPS with a certificate of the run's CA (``envkit.stubs.tls``)."""

    names: tuple[str, ...] = ()  # more names (or IP addresses) its certificate is valid for
    at: Key = field(default=(), compare=False)

    def blueprint(self) -> bool | dict[str, Any]:
        return {"names": list(self.names)} if self.names else True


@dataclass(frozen=True)
class StubDef:
    port: int = DEFAULT_PORT
    routes: tuple[StubRoute, ...] = ()
    default: StubResponse | None = None  # None: 404 naming the closest routes
    scenarios: tuple[tuple[str, str], ...] = ()  # scenario -> initial state (one not named here: "started")
    tls: StubTls | None = None  # None: plain HTTP
    at: Key = field(default=(), compare=False)

    def blueprint(self, base: Path) -> dict[str, Any]:
        """The ``stub:`` key as the blueprint writes it (``envkit export`` carries it in ``x-envkit``);
        a body file's path relative to ``base``."""
        out: dict[str, Any] = {"port": self.port, "routes": [r.blueprint(base) for r in self.routes]}
        if self.default is not None:
            out["default"] = self.default.blueprint(base)
        if self.scenarios:
            out["scenarios"] = dict(self.scenarios)
        if self.tls is not None:
            out["tls"] = self.tls.blueprint()
        return out

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "routes": [r.config() for r in self.routes]}
        if self.default is not None:
            out["default"] = self.default.config()
        if self.scenarios:
            out["scenarios"] = dict(self.scenarios)
        if self.tls is not None:
            out["tls"] = True  # the files are copied in before it starts (envkit.stubs.tls.TLS_DIR)
        return out

    def config_text(self) -> str:
        return json.dumps(self.config(), separators=(",", ":"), sort_keys=True)
