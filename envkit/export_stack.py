"""An exported Compose document in the form ``docker stack deploy`` takes (``envkit export --format stack``).

``to_stack`` is pure: it takes ``envkit.export.to_compose``'s result and changes what Swarm reads
differently from Compose, so that the same blueprint deploys as a stack on a Docker Swarm:

    {{ in environment values, hostnames, volume targets and labels → {{"{{"}}: Swarm expands Go templates there
                    ({{.Node.Hostname}}), Compose does not; the process sees the value as written (a
                    stub's routes hold {{body.amount_cents}}, which Swarm refuses: function "body" not defined)
    a secret with {{ → the value to set for its ``${VAR}`` (``secrets``: the CLI's ``.secrets.env`` file) is
                    escaped the same way, since `stack deploy` puts it into the environment as it is; if
                    the variable is also read where Swarm expands nothing (a command, a healthcheck),
                    that keeps ``${VAR}`` (raw) and the environment reads ``${VAR_SWARM}`` (escaped)
    top-level name  → left out: the stack's name is `docker stack deploy`'s argument
    pull_policy     → left out (not in the format `stack deploy` reads); deploy with `--resolve-image never`
                    so the nodes use envkit's content-tagged images they already have
    depends_on      → a list of names: Swarm starts every service at once (no start order, no conditions: noted)
    kind: job       → deploy.mode: replicated-job, restart on failure (one task run to success: with no start
                    order it may fail until its dependencies answer; Compose's ``restart: "no"`` is left out)
    ports           → the long form in host mode on the node that runs the task (no ingress routing mesh:
                    it needs IPVS, missing on some kernels); an ephemeral port stays ephemeral there;
                    Swarm has no host address: 127.0.0.1 is dropped (noted)
    every service   → deploy.endpoint_mode: dnsrr (a service name resolves to its tasks' addresses, with or
                    without IPVS; as envkit's own swarm engine does)

Everything else (healthchecks, networks, volumes, x-envkit, ``$$``, ``${VAR}`` secret references) is
read by ``stack deploy`` as Compose reads it. No I/O here.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

from envkit.export import ComposeExport

__all__ = ["GO_TEMPLATE_OPEN", "literal", "to_stack"]

#: Swarm's Go-template opening and the action that writes it literally
GO_TEMPLATE_OPEN, _OPEN_LITERAL = "{{", '{{"{{"}}'

_PORT = re.compile(r"^(?:(?P<ip>\[[^\]]*\]|[^:\[\]]*):)?(?:(?P<host>\d*):)?(?P<target>\d+)(?:/(?P<proto>\w+))?$")


def literal(text: str) -> str:
    """``text`` as Swarm passes it to the task unchanged (its Go templates written as text)."""
    return text.replace(GO_TEMPLATE_OPEN, _OPEN_LITERAL)


def to_stack(export: ComposeExport) -> ComposeExport:
    """The ``docker stack deploy`` form of a Compose export, with notes on what Swarm does differently."""
    document = copy.deepcopy(export.document)
    document.pop("name", None)
    notes = [n for n in export.notes if "docker compose port" not in n]
    notes.append("deploy with `docker stack deploy --resolve-image never -c FILE NAME` once every node has the "
                 "images (`envkit up` builds them on one engine; `docker save | docker load` them on each node)")
    ordered, addressed = False, False
    secrets = _templated(document, export.secrets)
    for name, svc in document["services"].items():
        svc.pop("pull_policy", None)
        if isinstance(svc.get("depends_on"), dict):
            svc["depends_on"] = list(svc["depends_on"])
            ordered = True
        deploy = svc.setdefault("deploy", {})
        if svc.get("restart") == "no" and svc.get("x-envkit", {}).get("kind") == "job":
            del svc["restart"]
            deploy["mode"] = "replicated-job"
            deploy.pop("replicas", None)
            deploy["restart_policy"] = {"condition": "on-failure"}  # no start order: retried until it succeeds
        deploy["endpoint_mode"] = "dnsrr"
        if svc.get("ports"):
            ports = [_host_mode(name, p) for p in svc["ports"]]
            svc["ports"] = [p for p, _ in ports]
            addressed = addressed or any(ip for _, ip in ports)
    if ordered:
        notes.append("Swarm starts every service at once: depends_on (order and conditions) has no effect in a "
                     "stack; services must retry until their dependencies answer")
    if addressed:
        notes.append("Swarm publishes a port on every address of the node that runs the task (it has no host "
                     "address): firewall the nodes, or drop the ports you do not need")
    if secrets:
        escaped = sorted(k for k, v in secrets.items() if v != export.secrets.get(k))
        notes.append("`docker stack deploy` reads the secret values from its environment (it has no --env-file)"
                     + (f"; set {', '.join(escaped)} as the secrets file has them, Go-template escaped ('{{' as "
                        "'{{\"{{\"}}'): Swarm expands templates in the environment" if escaped else ""))
    if "outputs" in (document.get("x-envkit") or {}):
        notes.append("outputs are not part of a stack; a task's published port: `docker service ps` (node) and "
                     "`docker -H NODE port CONTAINER`")
    return replace(export, document=document, notes=tuple(notes), fmt="stack", secrets=secrets)


def _templated(document: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """Escape the environment values and hostnames of ``document``'s services (in place), and return the
    secret values to set for them: one holding ``{{`` escaped where Swarm expands it (see the module text)."""
    places: list[tuple[dict[str, Any], str]] = []  # (mapping, key) of each string Swarm expands
    for svc in document["services"].values():
        if isinstance(svc.get("environment"), dict):
            places += [(svc["environment"], k) for k, v in svc["environment"].items() if isinstance(v, str)]
        if isinstance(svc.get("hostname"), str):
            places.append((svc, "hostname"))
        places += [(m, "target") for m in svc.get("volumes") or [] if isinstance(m, dict)
                   and isinstance(m.get("target"), str)]
    for volume in (document.get("volumes") or {}).values():  # a named volume's labels: Swarm expands them too
        labels = (volume or {}).get("labels")
        if isinstance(labels, dict):
            places += [(labels, k) for k, v in labels.items() if isinstance(v, str)]
    out = dict(secrets)
    for var in sorted(v for v, value in secrets.items() if GO_TEMPLATE_OPEN in value):
        ref = re.compile(r"(?<!\$)((?:\$\$)*)\$\{" + re.escape(var) + r"\}")  # ${VAR}, not $${VAR}
        kept = [where[key] for where, key in places]
        for where, key in places:
            where[key] = ""
        elsewhere = ref.search(str(_read(document))) is not None  # read raw outside the expanded places
        for (where, key), value in zip(places, kept, strict=True):
            where[key] = value
        name = var
        if elsewhere:
            name = next(n for n in (f"{var}_SWARM", *(f"{var}_SWARM_{i}" for i in range(2, 100))) if n not in out)
            for where, key in places:
                where[key] = ref.sub(rf"\g<1>${{{name}}}", where[key])
        else:
            del out[var]
        out[name] = literal(secrets[var])
    for where, key in places:
        where[key] = literal(where[key])
    return dict(sorted(out.items()))


def _read(value: Any) -> Any:
    """``value`` without its ``x-`` extension keys (envkit's own notes: nobody reads a secret there)."""
    if isinstance(value, dict):
        return {k: _read(v) for k, v in value.items() if not str(k).startswith("x-")}
    return [_read(v) for v in value] if isinstance(value, list) else value


def _host_mode(service: str, port: Any) -> tuple[dict[str, Any], str]:
    """A short-syntax port (``127.0.0.1::8080``) as the long form published in host mode, and its host address."""
    if isinstance(port, dict):
        return {**port, "mode": "host"}, str(port.get("host_ip", ""))
    found = _PORT.match(str(port))
    if found is None:
        raise ValueError(f"services.{service}.ports: cannot read {port!r}")
    out: dict[str, Any] = {"target": int(found["target"])}
    if found["host"]:
        out["published"] = int(found["host"])
    out["protocol"] = found["proto"] or "tcp"
    out["mode"] = "host"
    return out, found["ip"] or ""
