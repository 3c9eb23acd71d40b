"""Secret values: kept out of labels, plans, events, errors and terminal output (docs/security.md).

A value is secret when the blueprint says so: a variable listed under the top-level ``secrets:`` (every
value interpolated from it), an environment entry written ``KEY: {value: ..., secret: true}``, or an output
written ``NAME: {value: ..., secret: true}`` (which must take its secret part from one of the former).
The loader collects them as ``Secret`` (name, value) on ``Blueprint.secrets``.

* For machines (labels): each occurrence of a secret value becomes a placeholder ``${secret:NAME}``
  (``placeholders``); the value is put back (``restore``) from where it already is on the engine — the
  environment of the container that consumes it — found through a *locator* label
  ``io.envkit.secret.NAME = SERVICE/ENV_KEY[/START:END]`` (``locate`` / ``read_back``), or, for a secret
  variable, from the asking process's own environment.
* For humans (plans, events, errors): the same placeholders (``placeholders``) or ``****`` (``redact``),
  applied to an event's or an error's text fields (``scrub_event``, ``scrub_error``).

No I/O here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["PLACEHOLDER", "ScrubbedStream", "Secret", "locate", "names_in", "placeholders", "read_back", "redact", "restore",
           "scrub_error", "scrub_event"]

#: a secret's place in a label's text; the name is a variable (``DB_PASSWORD``) or ``service.KEY``
PLACEHOLDER = re.compile(r"\$\{secret:(?P<name>[A-Za-z0-9_.-]+)\}")
MASK = "****"

T = TypeVar("T")


@dataclass(frozen=True)
class Secret:
    name: str
    value: str = field(repr=False)


def _ordered(secrets: Iterable[Secret]) -> list[Secret]:
    # Longest first, so that a secret holding another is replaced whole.
    return sorted((s for s in secrets if s.value), key=lambda s: (-len(s.value), s.name))


def placeholders(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every secret value replaced by its ``${secret:NAME}``."""
    for s in _ordered(secrets):
        text = text.replace(s.value, f"${{secret:{s.name}}}")
    return text


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every secret value replaced by ``****``."""
    for s in _ordered(secrets):
        text = text.replace(s.value, MASK)
    return text


def names_in(text: str) -> set[str]:
    return {m.group("name") for m in PLACEHOLDER.finditer(text)}


def restore(text: str, values: Mapping[str, str]) -> str:
    """Put the secrets back; raises KeyError (the name) for one that ``values`` lacks."""
    return PLACEHOLDER.sub(lambda m: values[m.group("name")], text)


def locate(secret: Secret, environments: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> str | None:
    """Where the value already is: ``SERVICE/KEY`` of the first environment entry equal to it, else
    ``SERVICE/KEY/START:END`` of the first one holding it; None when no service has it."""
    inside = None
    for service, env in environments:
        for key, value in env:
            if value == secret.value:
                return f"{service}/{key}"
            at = value.find(secret.value) if secret.value else -1
            if at >= 0 and inside is None:
                inside = f"{service}/{key}/{at}:{at + len(secret.value)}"
    return inside


def read_back(locator: str, environments: Mapping[str, Mapping[str, str]]) -> str | None:
    """The value a locator points at, from the services' container environments (None if not there)."""
    parts = locator.split("/")
    if len(parts) not in (2, 3) or parts[1] not in environments.get(parts[0], {}):
        return None
    value = environments[parts[0]][parts[1]]
    if len(parts) == 2:
        return value
    start, _, end = parts[2].partition(":")
    if not (start.isdigit() and end.isdigit()):
        return None
    return value[int(start):int(end)]


def scrub_event(event: T, secrets: Iterable[Secret]) -> T:
    """A copy of a dataclass (an Event) whose text fields hold no secret value."""
    known = list(secrets)
    if not known or not dataclasses.is_dataclass(event) or isinstance(event, type):
        return event
    changes = {f.name: redact(v, known) for f in dataclasses.fields(event)
               if isinstance(v := getattr(event, f.name), str) and redact(v, known) != v}
    return dataclasses.replace(event, **changes) if changes else event


def scrub_error(exc: BaseException, secrets: Iterable[Secret]) -> None:
    """Remove secret values from an exception's message and text attributes, in place."""
    known = list(secrets)
    if not known:
        return
    exc.args = tuple(redact(a, known) if isinstance(a, str) else a for a in exc.args)
    for name, value in list(vars(exc).items()):
        if isinstance(value, str):
            setattr(exc, name, redact(value, known))
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            setattr(exc, name, tuple(redact(v, known) for v in value))


class ScrubbedStream:
    """A byte stream (a terminal) that passes everything on but the secret values, as ``****``. A chunk
    ending in what could be the start of a secret keeps that end back until the next chunk says, so a
    value split between two writes is still caught; anything else passes at once (typing stays live)."""

    def __init__(self, target: Any, secrets: Iterable[Secret]) -> None:
        self.target = target
        self.values = [s.value.encode() for s in _ordered(secrets)]
        self.held = b""

    def write(self, data: bytes) -> int:
        text = self.held + bytes(data)
        for value in self.values:
            text = text.replace(value, MASK.encode())
        keep = max((n for value in self.values for n in range(min(len(value) - 1, len(text)), 0, -1)
                    if text.endswith(value[:n])), default=0)
        self.held = text[len(text) - keep:] if keep else b""
        self.target.write(text[:len(text) - keep] if keep else text)
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        """Write what was kept back (the stream has ended)."""
        if self.held:
            self.target.write(self.held)
            self.held = b""
        self.target.flush()
