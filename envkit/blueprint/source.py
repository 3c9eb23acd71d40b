"""Reading a blueprint file into plain data plus a table of where each key path stands in the file.

The rest of the loader works on plain dicts and lists (easy to interpolate and normalise); errors look
up ``Marks`` to name ``file:line:column``. Key paths are tuples such as ``("services", "api",
"depends_on", 1)`` and print as ``services.api.depends_on[1]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envkit.errors import BlueprintError, Problem

__all__ = ["Key", "Marks", "Source", "format_path", "read_source"]

Key = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Marks:
    """Where each key path starts (1-based line and column); a path not found borrows its parent's."""

    file: str
    positions: dict[Key, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Key) -> tuple[int, int]:
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (0, 0))

    def problem(self, path: Key, message: str) -> Problem:
        line, column = self.at(path)
        return Problem(self.file, line, column, format_path(path), message)


@dataclass
class Source:
    """A blueprint's raw data, the folder its relative paths start from, and its marks."""

    file: Path
    directory: Path
    data: dict[str, Any]
    marks: Marks


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 numbers: ``22:22`` stays a string, where YAML 1.1 reads the base-60 number
    1342 (a port mapping turned silently into another port)."""


_NO_BASE_60 = {
    "tag:yaml.org,2002:int": re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
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


def read_source(path: str | Path) -> Source:
    file = resolve_file(path)
    shown = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError([Problem(shown, 0, 0, "", f"cannot read: {exc}")]) from exc
    marks = Marks(shown)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            problems: list[Problem] = []
            data = _build(loader, node, (), marks, problems) if node is not None else {}
        finally:
            loader.dispose()
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


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _build(loader: _Loader, node: yaml.Node, path: Key, marks: Marks, problems: list[Problem]) -> Any:
    marks.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.CollectionNode) and node.tag not in (_MAP, _SEQ):
        # Collections are built here, not by PyYAML's constructors: refuse a tag rather than drop it.
        problems.append(marks.problem(path, f"unsupported YAML tag '{node.tag}'"))
        return None
    if isinstance(node, yaml.MappingNode):
        written = {id(k) for k, _ in node.value}  # keys in this mapping itself, not merged in
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) come first; later keys override them
        out: dict[Any, Any] = {}
        explicit: set[Key] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
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
            out[key] = _build(loader, value_node, child, marks, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), marks, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
