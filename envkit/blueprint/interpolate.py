"""``${VAR}`` interpolation from the caller's environment, on plain data, before anything else.

Supported forms (as in Compose): ``${VAR}``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}``
(unset), ``${VAR:?message}`` / ``${VAR?message}`` (error), ``${VAR:+alt}`` and ``$$`` for a literal ``$``;
a default or alternative may itself hold one ``${...}``.
References with a dot (``${services.api.host}``, ``${run.id}``) belong to the run, not the environment:
they are left in place and resolved once the run exists (see ``envkit.outputs``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from envkit.blueprint import refs
from envkit.blueprint.source import Key, Marks
from envkit.errors import Problem

__all__ = ["interpolate"]

# A body may hold one nested ``${...}`` (``${TAG:-${DEFAULT_TAG}}``); it is substituted in its turn.
_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<body>(?:[^{}]|\$\{[^{}]*\})*)\})")
_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?\Z", re.S)


def interpolate(data: Any, env: Mapping[str, str], marks: Marks, problems: list[Problem],
                used: dict[str, set[str]] | None = None) -> Any:
    """``used`` gets, for each variable, every value it was substituted with (a default included): how the
    loader knows which text came from a secret variable."""
    return _walk(data, (), _Recording(env, used if used is not None else {}), marks, problems)


class _Recording(Mapping[str, str]):
    """The caller's environment, noting what each variable was substituted with (see ``interpolate``)."""

    def __init__(self, env: Mapping[str, str], used: dict[str, set[str]]) -> None:
        self.env, self.used = env, used

    def __getitem__(self, key: str) -> str:
        return self.env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)

    def note(self, name: str, value: str) -> str:
        if value:
            self.used.setdefault(name, set()).add(value)
        return value


def _walk(value: Any, path: Key, env: _Recording, marks: Marks, problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, (*path, k), env, marks, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*path, i), env, marks, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        return _substitute(value, path, env, marks, problems)
    return value


def _substitute(text: str, path: Key, env: _Recording, marks: Marks, problems: list[Problem]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "\x00"  # a literal "$", restored at the very end so nothing re-reads it
        body = match.group("body")
        if refs.is_ref(body):
            return match.group(0)
        parsed = _BODY.match(body)
        if not parsed:
            problems.append(marks.problem(path, f"invalid interpolation '${{{body}}}'"))
            return match.group(0)
        name, op, arg = parsed.group("name"), parsed.group("op"), parsed.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return env.note(name, value if value else _substitute(arg, path, env, marks, problems))
        if op == "-":
            return env.note(name, value if value is not None else _substitute(arg, path, env, marks, problems))
        if op in (":?", "?"):
            if (value is None) or (op == ":?" and value == ""):
                why = arg or f"variable {name} must be set"
                problems.append(marks.problem(path, f"{why} (required by ${{{name}{op}...}})"))
                return ""
            return env.note(name, value)
        if op == ":+":
            return _substitute(arg, path, env, marks, problems) if value else ""
        if op == "+":
            return _substitute(arg, path, env, marks, problems) if value is not None else ""
        return env.note(name, value or "")

    return _TOKEN.sub(replace, text).replace("\x00", "$")
