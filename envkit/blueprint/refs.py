"""Run references, ``${a.b}``: the one grammar, and the parser that turns one into a typed reference.

A reference has a dot, which a caller's variable cannot (``${services.api.host}``, ``${run.id}``), so
interpolation leaves it in place (``interpolate.py``); validation checks what it names (``validate.py``);
the planner keeps the outputs whose services are in the run (``plan.py``); outputs resolve it against the
live run (``envkit.outputs``). The forms:

    ${run.id}  ${run.name}                 the run id (``name`` is a synonym)
    ${services.NAME.host}                  the host address of NAME's published ports
    ${services.NAME.name}                  the engine name of NAME's replica 1
    ${services.NAME.ports.PORT}            the host port bound to NAME's container port PORT/tcp
    ${services.NAME.ca_pem}                a TLS stub's CA certificate, PEM (docs/stubs.md#tls)
    ${services.NAME.ca_file}               the path of a file of this user (0600) holding that PEM
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["REF", "BadRef", "PortRef", "Ref", "RunRef", "ServiceRef", "is_ref", "parse", "services_in", "substitute"]

_BODY = r"[A-Za-z_][\w-]*(?:\.[\w-]+)+"
#: a reference inside a template; group ``ref`` is its body (``services.api.host``)
REF = re.compile(rf"\$\{{(?P<ref>{_BODY})\}}")
_WHOLE = re.compile(rf"^{_BODY}\Z")


@dataclass(frozen=True)
class RunRef:
    attr: Literal["id", "name"]


@dataclass(frozen=True)
class ServiceRef:
    service: str
    attr: Literal["host", "name", "ca_pem", "ca_file"]


@dataclass(frozen=True)
class PortRef:
    service: str
    port: int


Ref = RunRef | ServiceRef | PortRef


class BadRef(ValueError):
    """Not one of the forms; ``service`` is set when it is a ``services.NAME.…`` of an unknown shape."""

    def __init__(self, text: str, hint: str, service: str | None = None) -> None:
        super().__init__(f"unknown reference '${{{text}}}' ({hint})")
        self.text = text
        self.service = service


def is_ref(body: str) -> bool:
    """Whether the body of a ``${…}`` is a run reference (it has a dot) rather than a caller's variable."""
    return _WHOLE.match(body) is not None


def parse(body: str) -> Ref:
    """The typed reference of ``body`` (``services.api.ports.8080``); raises BadRef for any other shape."""
    parts = body.split(".")
    if parts[0] == "run":
        if parts[1:] in (["id"], ["name"]):
            return RunRef("id" if parts[1] == "id" else "name")
        raise BadRef(body, "use ${run.id}")
    if parts[0] != "services" or len(parts) < 3:
        raise BadRef(body, "use ${services.NAME.host} or ${services.NAME.ports.PORT}")
    name = parts[1]
    if parts[2:] == ["host"]:
        return ServiceRef(name, "host")
    if parts[2:] == ["name"]:
        return ServiceRef(name, "name")
    if parts[2:] == ["ca_pem"]:
        return ServiceRef(name, "ca_pem")
    if parts[2:] == ["ca_file"]:
        return ServiceRef(name, "ca_file")
    if parts[2] == "ports" and len(parts) == 4 and parts[3].isdigit():
        return PortRef(name, int(parts[3]))
    raise BadRef(body, f"use ${{services.{name}.host}} or ${{services.{name}.ports.PORT}}", name)


def _bodies(template: str) -> Iterator[str]:
    return (m.group("ref") for m in REF.finditer(template))


def services_in(template: str) -> set[str]:
    """The services a template refers to (well-formed or not: ``${services.x.bogus}`` names x)."""
    out = set()
    for body in _bodies(template):
        parts = body.split(".")
        if parts[0] == "services" and len(parts) >= 3:
            out.add(parts[1])
    return out


def substitute(template: str, value: Callable[[Ref], str]) -> str:
    """The template with each reference replaced by ``value(ref)``; raises BadRef for a malformed one."""
    return REF.sub(lambda m: value(parse(m.group("ref"))), template)
