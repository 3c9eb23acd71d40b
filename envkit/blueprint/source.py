"""Reading a blueprint file into plain data plus a table of where each key path stands in the file.

The rest of the loader works on plain dicts and lists (easy to interpolate and normalise); errors look
up ``Marks`` to name ``file:line:column``. Key paths are tuples such as ``("services", "api",
"depends_on", 1)`` and print as ``services.api.depends_on[1]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envkit.errors import BlueprintError, Problem

__all__ = ["COMPOSE_TAGS", "Key", "Marks", "Source", "Tagged", "format_path", "read_mapping", "read_source"]

Key = tuple[str | int, ...]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key with a line break, a space or a control character is quoted, so the path stays one line.
            text = part if part and part.isprintable() and not any(c.isspace() for c in part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


@dataclass
class Marks:
    """Where each key path starts (1-based line and column); a path not found borrows its parent's."""

    file: str
    positions: dict[Key, tuple[int, int]] = field(default_factory=dict)
    #: a file merged over this one (compose.override.yaml): what it writes is named in it (``where``)
    over: Marks | None = None

    def at(self, path: Key) -> tuple[int, int]:
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (0, 0))

    def where(self, path: Key) -> tuple[str, int, int]:
        """The file, line and column of ``path``: in ``over`` when it holds as much of the path as this file
        (it was merged last), else here."""
        if self.over is not None and 0 < self.over._held(path) >= self._held(path):
            return self.over.where(path)
        return (self.file, *self.at(path))

    def _held(self, path: Key) -> int:
        probe = tuple(path)
        while probe and probe not in self.positions:
            probe = probe[:-1]
        return len(probe)

    def problem(self, path: Key, message: str) -> Problem:
        file, line, column = self.where(path)
        # One problem, one line: a value quoted in the message may hold a line break or a control character.
        message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
        return Problem(file, line, column, format_path(path), message)


#: YAML tags of Compose's merge of ``extends`` and override files, read only in a compose file
COMPOSE_TAGS = frozenset({"!reset", "!override"})


@dataclass(frozen=True)
class Tagged:
    """A value written with one of ``COMPOSE_TAGS`` (``ports: !reset []``): ``envkit.compose_extends`` uses it."""

    tag: str
    value: Any


@dataclass
class Source:
    """A blueprint's raw data, the folder its relative paths start from, and its marks."""

    file: Path
    directory: Path
    data: dict[str, Any]
    marks: Marks


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 scalars: ``22:22`` stays a string, where YAML 1.1 reads the base-60 number
    1342 (a port mapping turned silently into another port); ``off``/``yes``/``no``/``on`` stay strings (YAML
    1.1 turns ``OFF: off`` into ``False: false``); ``0755`` stays the string ``"0755"`` (YAML 1.1 reads the
    octal 493, YAML 1.2 the decimal 755 — either silently changes what was meant; ``0o755`` is octal)."""


#: Limits that keep hostile input (alias bombs, deep nesting, huge files) from exhausting the machine.
MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000  # values after expanding aliases; real blueprints hold a few thousand
MAX_DEPTH = 64

_NO_BASE_60 = {
    "tag:yaml.org,2002:bool": re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    "tag:yaml.org,2002:int": re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    "tag:yaml.org,2002:float": re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, _NO_BASE_60.get(tag, regexp)) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def resolve_file(path: str | Path) -> Path:
    """A blueprint is a YAML file, or a folder holding ``blueprint.yaml`` (or ``.yml``)."""
    p = Path(path)
    if p.is_dir():
        for name in ("blueprint.yaml", "blueprint.yml"):
            if (p / name).is_file():
                return p / name
        raise BlueprintError([Problem(str(p), 0, 0, "", "folder holds no blueprint.yaml")])
    if not p.is_file():
        raise BlueprintError([Problem(str(p), 0, 0, "", "no such file or folder")])
    return p


def read_source(path: str | Path, *, compose: bool = False) -> Source:
    """A blueprint file's data and marks; ``compose``: a Compose file, whose ``COMPOSE_TAGS`` are read (as
    ``Tagged`` values) where a blueprint refuses every tag."""
    file = resolve_file(path)
    shown = str(file)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise BlueprintError([Problem(shown, 0, 0, "", f"file is {size // 1024} KiB; a blueprint may be at most "
                                                         f"{MAX_BYTES // 1024 // 1024} MiB (split data out into seed files)")])
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError([Problem(shown, 0, 0, "", f"cannot read: {exc}")]) from exc
    marks = Marks(shown)
    try:
        loader = _Loader(text)
        try:
            try:
                node = loader.get_single_node()
            except RecursionError:
                line, column = _too_deep_at(text)
                raise BlueprintError([Problem(shown, line, column, "",
                                              f"nested too deeply (more than {MAX_DEPTH} levels)")]) from None
            problems: list[Problem] = []
            tags = COMPOSE_TAGS if compose else frozenset()
            data = _Builder(loader, marks, problems, tags).build(node, ()) if node is not None else {}
        finally:
            loader.dispose()
    except _TooBig as exc:
        raise BlueprintError([exc.problem]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        why = f"not valid YAML: {exc.problem}"
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            # The real mistake is often where the construct began, e.g. a '[' never closed.
            why += f" ({exc.context} started at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        elif exc.context:
            why += f" ({exc.context})"
        raise BlueprintError([Problem(shown, line, col, "", why)]) from exc
    except yaml.YAMLError as exc:
        raise BlueprintError([Problem(shown, 0, 0, "", f"not valid YAML: {exc}")]) from exc
    if problems:
        raise BlueprintError(problems)
    if not isinstance(data, dict):
        raise BlueprintError([marks.problem((), "the top level must be a mapping (name:, services:, ...)")])
    return Source(file=file, directory=file.parent.resolve(), data=data, marks=marks)


def read_mapping(data: Mapping[str, Any], directory: Path, origin: str) -> Source:
    """A blueprint given as Python data (``envkit.up({...})``): copied into plain dicts and lists
    (tuples read as lists, paths as strings), within the same limits as a file. Errors name ``origin``
    and the key path; there are no lines. Without ``name:`` it is named after ``directory``, as Compose
    names a project after its folder."""
    marks = Marks(origin)
    problems: list[Problem] = []
    counter = [0]
    plain = _plain(data, (), marks, problems, set(), counter)
    if problems:
        raise BlueprintError(problems)
    if not isinstance(plain, dict):
        raise BlueprintError([marks.problem((), "the top level must be a mapping (name:, services:, ...)")])
    if "name" not in plain:
        plain = {"name": re.sub(r"[^a-z0-9_-]", "-", directory.resolve().name.lower()).strip("-_")[:40] or "env",
                 **plain}
    return Source(file=Path(origin), directory=directory.resolve(), data=plain, marks=marks)


def _plain(value: Any, path: Key, marks: Marks, problems: list[Problem], active: set[int], counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise BlueprintError([marks.problem(path, f"more than {MAX_NODES} values; a blueprint needs far fewer")])
    if len(path) > MAX_DEPTH:
        raise BlueprintError([Problem(marks.file, 0, 0, format_path(path[:4]) + "...",
                                      f"nested too deeply (more than {MAX_DEPTH} levels)")])
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping | list | tuple):
        if id(value) in active:
            raise BlueprintError([marks.problem(path, "a value contains itself")])
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if not isinstance(key, str | int | float | bool) or key is None:
                        problems.append(marks.problem(path, f"mapping keys must be strings, got {type(key).__name__}"))
                        continue
                    out[str(key)] = _plain(item, (*path, str(key)), marks, problems, active, counter)
                return out
            return [_plain(item, (*path, i), marks, problems, active, counter) for i, item in enumerate(value)]
        finally:
            active.discard(id(value))
    problems.append(marks.problem(path, f"expected plain data (str, number, bool, None, list, dict), "
                                        f"got {type(value).__name__}"))
    return None


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class _Builder:
    """Builds plain data from YAML nodes, recording marks, within the limits above (aliases are expanded,
    so a few bytes of anchors can mean billions of values: they are counted, and a recursive alias is refused)."""

    def __init__(self, loader: _Loader, marks: Marks, problems: list[Problem],
                 tags: frozenset[str] = frozenset()) -> None:
        self.loader, self.marks, self.problems, self.tags = loader, marks, problems, tags
        self.nodes = 0
        self.active: set[int] = set()  # nodes on the current path: an alias to one of them is recursive

    def build(self, node: yaml.Node, path: Key) -> Any:
        marks, problems = self.marks, self.problems
        marks.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(marks.problem(path, f"more than {MAX_NODES} values once aliases are expanded "
                                              "(an alias bomb?); a blueprint needs far fewer"))
        if len(path) > MAX_DEPTH:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            raise _TooBig(Problem(marks.file, line, column, format_path(path[:4]) + "...",
                                  f"nested too deeply (more than {MAX_DEPTH} levels)"))
        if id(node) in self.active:
            raise _TooBig(marks.problem(path, "an alias refers to a value that contains it (a recursive alias)"))
        if node.tag in self.tags:  # the same node untagged, its value wrapped
            plain = _MAP if isinstance(node, yaml.MappingNode) else _SEQ if isinstance(node, yaml.SequenceNode) else \
                self.loader.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
            untagged = type(node)(plain, node.value, node.start_mark, node.end_mark)
            self.nodes -= 1  # counted once, as the untagged node
            return Tagged(node.tag, self.build(untagged, path))
        if isinstance(node, yaml.CollectionNode) and node.tag not in (_MAP, _SEQ):
            # Collections are built here, not by PyYAML's constructors: refuse a tag rather than drop it.
            problems.append(marks.problem(path, f"unsupported YAML tag '{node.tag}'"))
            return None
        if isinstance(node, yaml.MappingNode):
            self.active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self.active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            try:
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Key) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
            self.problems.append(self.marks.problem(path, f"cannot read this value: {str(exc).split(';')[0]}"))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Key) -> dict[Any, Any]:
        marks, problems, loader = self.marks, self.problems, self.loader
        written = {id(k) for k, _ in node.value}  # keys in this mapping itself, not merged in
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) come first; later keys override them
        out: dict[Any, Any] = {}
        explicit: set[Key] = set()
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(marks.problem(path, "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            # The key's own position: errors about a key (unknown, duplicate) point at it.
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if child in explicit:  # merged-in keys come first, so this one and the earlier are both written here
                problems.append(Problem(marks.file, *where, format_path(child),
                                        f"duplicate key '{key}' (first set on line {marks.positions[child][0]}); "
                                        "keep only one"))
                continue
            if key in out:  # overriding a merged-in value: forget where that one stood
                for stale in [p for p in marks.positions if p[:len(child)] == child]:
                    del marks.positions[stale]
            if id(key_node) in written:
                explicit.add(child)
            marks.positions[child] = where
            out[key] = self.build(value_node, child)
        return out


def _too_deep_at(text: str) -> tuple[int, int]:
    """Where nesting first goes past MAX_DEPTH (PyYAML's composer recurses, its parser does not)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH and event.start_mark is not None:
                return event.start_mark.line + 1, event.start_mark.column + 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return 0, 0


class _TooBig(Exception):
    """Input past a limit: stop building at once (going on would be the damage)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem
