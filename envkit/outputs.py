"""A run's outputs: templates from the blueprint resolved against the live run, and the forms they are
handed over in (environment variables, a dotenv file, a versioned JSON document)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from envkit import labels as L
from envkit import secrets
from envkit.backends.base import ContainerState, PortKey, Protocol
from envkit.blueprint import refs
from envkit.errors import EnvkitError
from envkit.runs import RunInfo
from envkit.secrets import Secret
from envkit.stopped import stopped_error
from envkit.stubs import tls

__all__ = [
    "JSON_SCHEMA",
    "Outputs",
    "ca_pem",
    "host_port",
    "mask",
    "resolve",
    "resolve_each",
    "run_document",
    "secret_values",
    "service_host",
    "shown",
    "to_dotenv",
]

JSON_SCHEMA = "envkit.run/v1"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|api_?key|private", re.I)
# The password of a URL runs to the *last* "@" before the host ("s3cr/et@x" holds both "/" and "@").
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?!\d+(?:[/?#]|$))(?P<pw>\S*)(?P<tail>@[^@/\s]*(?:[/?#]|\s|$))",
                           re.I)
# libpq key/value strings ("host=db password=x" or password='it''s'), and KEY=value pairs in general.
_KV_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s']+)", re.I)


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


def ca_pem(info: RunInfo, service: str) -> str:
    """The CA certificate a TLS stub's certificate is signed with (its label; the CA's key is nowhere)."""
    for c in _replicas(info, service):
        if c.labels.get(L.TLS_CA):
            return c.labels[L.TLS_CA]
    raise EnvkitError(f"service {service} of run {info.run_id} is no TLS stub (no {L.TLS_CA} label)")


def service_host(info: RunInfo, service: str) -> str:
    """The host name of a service for this machine: where its published ports are reached (the one
    answer for ``${services.x.host}`` and ``Environment.host()``); the engine's host when it
    publishes nothing, or has no container in this run (left out by ``--only``)."""
    for c in info.replicas(service):
        for key in sorted(c.ports):
            return _reachable(info, c.ports[key].host_ip)
    return info.host


def secret_values(info: RunInfo, known: tuple[Secret, ...] = (), fallback: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
    """Each secret the run's labels refer to, by name: from ``known`` (the blueprint, in the process that
    loaded it), else read back from the container that holds it (its locator label), else — for a secret
    variable — from ``fallback`` (the asking process's environment). One that is nowhere is left out."""
    out = {s.name: s.value for s in known}
    environments = {name: dict(replicas[0].environment) for name, replicas in info.services.items() if replicas}
    for name, where in info.secret_locators.items():
        if name not in out:
            value = secrets.read_back(where, environments)
            if value is not None:
                out[name] = value
    for _, template in info.output_templates:
        for name in secrets.names_in(template):
            if name not in out and fallback is not None and name in fallback and "." not in name:
                out[name] = fallback[name]
    return out


def shown(info: RunInfo, values: Mapping[str, str]) -> dict[str, str]:
    """The outputs as a person may see them: an output marked secret as ``****``, a secret inside any other
    as ``****`` (``postgresql://app:****@127.0.0.1:5432/app``), then ``mask``'s own guesses."""
    masked = resolve(info, secret=defaultdict(lambda: secrets.MASK))
    return {k: "****" if k in info.secret_outputs else mask(k, masked.get(k, v)) for k, v in values.items()}


class Outputs(Mapping[str, str]):
    """A run's outputs, each resolved on its own: one that cannot be (its service has died, killed by a
    fault or not) raises its error when it is read, and the others stay readable; reading them all
    (``dict(outputs)``, ``**outputs``) raises the first such error."""

    def __init__(self, values: Mapping[str, str | EnvkitError]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        value = self._values[key]
        if isinstance(value, EnvkitError):
            raise value
        return value

    def __contains__(self, key: object) -> bool:  # whether there is such an output, not its value
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: f"<{type(v).__name__}: {v}>" if isinstance(v, EnvkitError) else v for k, v in self._values.items()}
        return f"Outputs({shown!r})"


def resolve(info: RunInfo, templates: tuple[tuple[str, str], ...] | None = None,
            secret: Mapping[str, str] | None = None) -> dict[str, str]:
    """The outputs' values, all of them (the first one that cannot be resolved raises). ``secret``: the
    secrets' values by name (``secret_values``); an output that needs one it lacks is an error that names it."""
    return dict(resolve_each(info, templates, secret))


def resolve_each(info: RunInfo, templates: tuple[tuple[str, str], ...] | None = None,
                 secret: Mapping[str, str] | None = None) -> Outputs:
    """The outputs' values as ``resolve`` gives them, each one's error kept for when it is read (``Outputs``)."""
    def value(ref: refs.Ref) -> str:
        if isinstance(ref, refs.RunRef):
            return info.run_id
        service = ref.service
        if isinstance(ref, refs.ServiceRef) and ref.attr == "host":
            return service_host(info, service)
        if isinstance(ref, refs.ServiceRef) and ref.attr in ("ca_pem", "ca_file"):
            pem = ca_pem(info, service)
            return pem if ref.attr == "ca_pem" else tls.ca_file(info.run_id, service, pem)
        if isinstance(ref, refs.ServiceRef):
            return L.container_name(info.run_id, service, 1)
        return str(host_port(info, service, ref.port)[1])

    out: dict[str, str | EnvkitError] = {}
    for key, template in (templates or info.output_templates):
        try:
            text = refs.substitute(template, value)
        except EnvkitError as exc:  # a dead service: this output's problem, not the others'
            out[key] = exc
            continue
        try:
            out[key] = secrets.restore(text, secret if secret is not None else {})
        except KeyError as missing:
            name = missing.args[0]
            how = f"set {name} in the environment" if "." not in name else "the container that held it is gone"
            out[key] = EnvkitError(f"output {key} of run {info.run_id} needs the secret {name}, which no container "
                                   f"of the run holds ({how})")
    return Outputs(out)


def mask(key: str, value: str, secret: bool = False) -> str:
    """For human eyes: hide a secret output whole, values of secret-looking keys, passwords inside URLs
    and libpq ``password=`` settings."""
    if secret:
        return "****"
    if _SECRET_KEY.search(key) and "://" not in value and "=" not in value:
        return "****"
    value = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}****{m.group('tail')}", value)
    return _KV_PASSWORD.sub(lambda m: f"{m.group('head')}****", value)


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
