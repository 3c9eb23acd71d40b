"""A run's outputs: templates from the blueprint resolved against the live run, and the forms they are
handed over in (environment variables, a dotenv file, a versioned JSON document)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from envkit import labels as L
from envkit.blueprint import refs
from envkit.errors import EnvkitError
from envkit.runs import RunInfo

__all__ = ["JSON_SCHEMA", "mask", "resolve", "run_document", "to_dotenv"]

JSON_SCHEMA = "envkit.run/v1"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|api_?key|private", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<pw>[^@/\s]+)(?P<tail>@)", re.I)


def _reachable(info: RunInfo, ip: str) -> str:
    """Where a published port is reached from here: a wildcard or loopback binding lives on the
    engine's host (127.0.0.1 for a local engine); any other address is used as it is."""
    return info.host if ip in ("0.0.0.0", "::", "", "127.0.0.1", "::1") else ip


def host_port(info: RunInfo, service: str, container_port: int, protocol: str = "tcp") -> tuple[str, int]:
    for c in info.replicas(service):
        bound = c.ports.get(f"{container_port}/{protocol}")
        if bound:
            return _reachable(info, bound[0]), bound[1]
    if not info.replicas(service):
        raise EnvkitError(f"run {info.run_id} has no service '{service}'")
    raise EnvkitError(f"service {service} of run {info.run_id} publishes no port {container_port}/{protocol}")


def resolve(info: RunInfo, templates: tuple[tuple[str, str], ...] | None = None) -> dict[str, str]:
    def value(ref: refs.Ref) -> str:
        if isinstance(ref, refs.RunRef):
            return info.run_id
        service = ref.service
        if isinstance(ref, refs.ServiceRef) and ref.attr == "host":
            replicas = info.replicas(service)
            for c in replicas:
                if c.ports:
                    return _reachable(info, next(iter(c.ports.values()))[0])
            return info.host
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
                        key: {"host": _reachable(info, ip), "port": port}
                        for key, (ip, port) in sorted(c.ports.items())
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
