"""How a value of the blueprint is read: the primitives (string, number, duration, command, key/value
list …), the ``KeyDef`` a table of keys is made of, and ``read_keys``, the one loop over such a table.

Every reader reports what is wrong through ``Reader.error`` (with the key path, so the message gets the
file, line and column) and returns ``None`` for a value it could not read; ``read_keys`` then uses the
key's default, so that one bad value never hides the problems of the others.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from envkit.blueprint import compose_hints
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem
from envkit.secrets import Secret

__all__ = [
    "ENV_NAME",
    "MAX_DURATION",
    "NAME",
    "KeyDef",
    "ReadFn",
    "Reader",
    "Table",
    "kind_of",
    "parse_duration",
    "parse_size",
    "read_keys",
    "scalar_text",
    "show",
]

T = TypeVar("T")

# ``\Z``, not ``$``: a ``$`` also matches before a final newline, which would let "db\n" through.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*\Z")
#: the longest duration a blueprint may ask for (a probe timeout, a grace period): one day
MAX_DURATION = 86400.0

#: reads one value at a key path; returns None when it reported a problem (the key's default is used)
ReadFn = Callable[["Reader", Any, Key], Any]


@dataclass(frozen=True)
class KeyDef:
    """One key of the blueprint format: how it is read, its default, its reference line, where it goes.

    ``read`` is None for a key that the reader of the enclosing mapping reads itself (``build.context``,
    the long form of a port …): the table still names it, so it is allowed, documented and in the schema.
    """

    name: str
    read: ReadFn | None
    default: Any
    type: str  # the reference's "Type / forms" (Markdown)
    default_doc: str  # the reference's "Default" (Markdown): what the user gets without the key
    doc: str  # the reference's one line (Markdown)
    json: Mapping[str, Any] = field(default_factory=dict)  # JSON Schema of the value ({} = anything)
    section: str | None = None  # anchor of the key's own section in docs/blueprint.md
    compose: str | None = None  # the Compose key the value is copied to, as it is …
    compose_fn: str | None = None  # … or the envkit.export function that maps it
    container: str | None = None  # the ContainerSpec field the value is handed to unchanged
    attr: str = ""  # the model's attribute, when it is not ``name``

    @property
    def field(self) -> str:
        return self.attr or self.name


@dataclass(frozen=True)
class Table:
    """The keys of one mapping of the format (a service, a network, a port's long form …)."""

    title: str  # what the mapping is, for the reference and the schema
    keys: tuple[KeyDef, ...]
    extensions: bool = True  # ``x-…`` keys are allowed (and ignored)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    def __iter__(self) -> Iterator[KeyDef]:
        return iter(self.keys)


def read_keys(r: Reader, table: Table, spec: Mapping[str, Any], path: Key,
              at: Callable[[str], Key] | None = None) -> dict[str, Any]:
    """{model attribute: value} for every key of ``table`` that has a reader: read, or its default.

    ``at`` gives each key's path for errors (default ``(*path, key)``), for short forms whose keys
    are not in the file."""
    where = at or (lambda key: (*path, key))
    out: dict[str, Any] = {}
    for key in table:
        if key.read is None:
            continue
        value = None
        if key.name in spec:
            value = key.read(r, spec[key.name], where(key.name))
        out[key.field] = key.default if value is None else value
    return out


def parse_duration(value: Any) -> float | None:
    """``60s``, ``500ms``, ``2m``, ``1h``, ``1m30s`` or a plain number of seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else math.inf  # int(10**400) would not fit a float
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    if not isinstance(value, str):
        return None
    # At most 15 digits a part: a number too long for a float is no duration anyone means.
    parts = re.findall(r"(\d{1,15}(?:\.\d{1,15})?)(ms|s|m|h)", value.strip(), re.ASCII)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_size(value: Any) -> int | None:
    """``512m``, ``1g``, ``256MiB``, or a plain number of bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    # At most 20 digits (and exact arithmetic): "1<400 zeros>m" is refused, not an OverflowError.
    m = re.fullmatch(r"(\d{1,20}(?:\.\d{1,20})?)\s*([kmgt]?)(i?b)?", value.strip().lower(), re.ASCII)
    if not m:
        return None
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(Decimal(m.group(1)) * scale) or None


class Reader:
    """Collects the problems of one blueprint while its values are read."""

    def __init__(self, marks: Marks, directory: Path) -> None:
        self.marks = marks
        self.directory = directory
        self.problems: list[Problem] = []
        self.secrets: list[Secret] = []  # values the blueprint marks secret where they are written

    def error(self, path: Key, message: str) -> None:
        self.problems.append(self.marks.problem(path, message))

    def shown(self, relative: str) -> str:
        """A path from the blueprint, as the user would type it: based on the file's path as given."""
        return os.path.normpath(Path(self.marks.file).parent / Path(relative).expanduser())

    def mapping(self, value: Any, path: Key, what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            shape = "" if what.endswith(")") else " (a mapping)"  # "depends_on (a list or a mapping)" says it
            self.error(path, f"expected {what}{shape}, got {kind_of(value)}")
            return None
        return value

    def keys(self, data: dict[str, Any], path: Key, allowed: tuple[str, ...] | Table) -> None:
        names = allowed.names if isinstance(allowed, Table) else allowed
        for key in data:
            if key in names or key.startswith("x-"):
                continue
            compose = compose_hints.hint(allowed.title, key) if isinstance(allowed, Table) else None
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            if compose:  # a Compose habit: say what envkit has instead, not a look-alike key
                hint = f" (a Compose key; {compose})"
            else:
                hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(names)}"
            self.error((*path, key), f"unknown key '{key}'{hint}")

    def string(self, value: Any, path: Key, what: str = "a string") -> str | None:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            self.error(path, f"expected {what}, got {kind_of(value)}")
            return None
        return str(value)

    def integer(self, value: Any, path: Key, low: int, high: int, what: str) -> int | None:
        # ASCII digits only: "²".isdigit() is true, but int("²") fails; and at most 20 of them.
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) <= 20:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"expected {what} ({low}..{high}), got {show(value)}")
            return None
        return value

    def boolean(self, value: Any, path: Key) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {show(value)}")
            return False
        return value

    def duration(self, value: Any, path: Key) -> float | None:
        seconds = parse_duration(value)
        if seconds is None:
            self.error(path, f"expected a duration like 30s, 500ms or 2m, got {show(value)}")
        elif seconds > MAX_DURATION:
            self.error(path, f"expected a duration of at most 24h, got {show(value)}")
            return None
        return seconds

    def argv(self, value: Any, path: Key) -> tuple[str, ...] | None:
        """A command: a list of words, or a string split like a shell would (no shell is run)."""
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                self.error(path, f"cannot split command: {exc}")
                return None
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return tuple(str(v) for v in value)  # [] is the empty command, as "" is (entrypoint: [] clears it)
        self.error(path, f"expected a command (a list of words or a string), got {show(value)}")
        return None

    def pairs(self, value: Any, path: Key, what: str) -> tuple[tuple[str, str], ...]:
        """A ``KEY: value`` mapping or a ``["KEY=value"]`` list, as sorted pairs of strings."""
        out: dict[str, str] = {}
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) or "=" not in item:
                    self.error((*path, i), f"expected 'KEY=value', got {show(item)}")
                    continue
                k, v = item.split("=", 1)
                out[k] = v
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict | list):
                    self.error((*path, k), f"expected a scalar value, got {kind_of(v)}")
                    continue
                out[k] = "" if v is None else scalar_text(v)
        elif value is not None:
            self.error(path, f"expected {what} (a mapping or a list of KEY=value), got {kind_of(value)}")
        return tuple(sorted(out.items()))

    def items(self, value: Any, path: Key, what: str, each: Callable[[Any, Key], T | None]) -> list[T]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected {what} (a list), got {kind_of(value)}")
            return []
        found = (each(v, (*path, i)) for i, v in enumerate(value))
        return [x for x in found if x is not None]


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            str: "a string"}.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A value as an error message quotes it: short (a 1 MB string is not repeated back)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "a number of more than 30 digits"
    text = repr(value) if isinstance(value, str | int | float | bool) else kind_of(value)
    return text if len(text) <= 80 else text[:60] + "…" + text[-10:]


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
