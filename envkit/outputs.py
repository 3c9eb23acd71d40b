"""A run's outputs: templates from the blueprint resolved against the live run, and the forms they are
handed over in (environment variables, a dotenv file, a versioned JSON document)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from envkit import labels as L
from envkit.backends.base import ContainerState, PortKey, Protocol
from envkit.blueprint import refs
from envkit.errors import EnvkitError
from envkit.runs import RunInfo
from envkit.stopped import stopped_error

__all__ = ["JSON_SCHEMA", "host_port", "mask", "resolve", "run_document", "service_host", "to_dotenv"]

JSON_SCHEMA = "envkit.run/v1"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|api_?key|private", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<pw>[^@/\s]+)(?P<tail>@)", re.I)


def _reachable(info: RunInfo, ip: str) -> str:
    """Where a published port is reached from here: a wildcard or loopback binding lives on the
    engine's host (127.0.0.1 for a local engine); any other address is used as it is."""
    return info.host if ip in ("0.0.0.0", "::", "", "127.0.0.1", "::1") else ip


def _replicas(info: RunInfo, service: str) -> list[ContainerState]:
    replicas = info.replicas(service)
    if not replicas:
        raise EnvkitError(f"run {info.run_id} has no service '{service}'")
    return replicas


def host_port(info: RunInfo, service: str, container_port: int, protocol: Protocol = "tcp") -> tuple[str, int]:
    """Where this machine reaches a published port of a service (its first replica that publishes it)."""
    key = PortKey(container_port, protocol)
    for c in _replicas(info, service):
        bound = c.ports.get(key)
        if bound:
            return _reachable(info, bound.host_ip), bound.port
    dead = stopped_error(info.run_id, service, _replicas(info, service), "its ports are gone")
    if dead is not None:  # a stopped container publishes nothing: say that, not "no such port"
        raise dead
    raise EnvkitError(f"service {service} of run {info.run_id} publishes no port {key}")


def service_host(info: RunInfo, service: str) -> str:
    """The host name of a service for this machine: where its published ports are reached (the one
    answer for ``${services.x.host}`` and ``Environment.host()``); the engine's host when it
    publishes nothing, or has no container in this run (left out by ``--only``)."""
    for c in info.replicas(service):
        for key in sorted(c.ports):
            return _reachable(info, c.ports[key].host_ip)
    return info.host


def resolve(info: RunInfo, templates: tuple[tuple[str, str], ...] | None = None) -> dict[str, str]:
    def value(ref: refs.Ref) -> str:
        if isinstance(ref, refs.RunRef):
            return info.run_id
        service = ref.service
        if isinstance(ref, refs.ServiceRef) and ref.attr == "host":
            return service_host(info, service)
        if isinstance(ref, refs.ServiceRef):
            return L.container_name(info.run_id, service, 1)
        return str(host_port(info, service, ref.port)[1])

    return {key: refs.substitute(template, value) for key, template in (templates or info.output_templates)}


def mask(key: str, value: str) -> str:
    """For human eyes: hide values of secret-looking keys and passwords inside URLs."""
    if _SECRET_KEY.search(key) and not value.startswith(("http://", "https://")) and "://" not in value:
        return "****"
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}****{m.group('tail')}", value)


def to_dotenv(values: Mapping[str, str]) -> str:
    lines = []
    for k, v in values.items():
        if re.fullmatch(r"[\w@%+=:,./-]*", v):
            lines.append(f"{k}={v}")
        else:
            escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
            lines.append(f'{k}="{escaped}"')
    return "\n".join(lines) + ("\n" if lines else "")


def run_document(info: RunInfo, outputs: Mapping[str, str]) -> dict[str, Any]:
    """The documented, versioned JSON hand-off (schema ``envkit.run/v1``; see docs/outputs.md)."""
    services: dict[str, Any] = {}
    for name, replicas in info.services.items():
        services[name] = {
            "kind": replicas[0].labels.get(L.KIND, "service") if replicas else "service",
            "replicas": [
                {
                    "container": c.name,
                    "state": c.status,
                    "exit_code": c.exit_code,
                    "ports": {
                        str(key): {"host": _reachable(info, bound.host_ip), "port": bound.port}
                        for key, bound in sorted(c.ports.items())
                    },
                }
                for c in replicas
            ],
        }
    return {
        "schema": JSON_SCHEMA,
        "run": info.run_id,
        "blueprint": info.blueprint,
        "created_at": info.created_at,
        "host": info.host,
        "services": services,
        "outputs": dict(outputs),
    }


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
