"""Which environment a test gets: what a marker asks for, which node owns it, and the pool keyed by both.

The pool holds the environments of one pytest process, keyed by (source, owning node id): a test asking
for an environment its chain already owns gets that one. Without an owner in the chain (a test-scoped
mark on a wider fixture), pytest ends the fixture exactly when the test is done, and the key is made
unique with a sequence number.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import pytest

from envkit.pytest_plugin.settings import MARKER_SCOPES, Scope

if TYPE_CHECKING:
    from _pytest.nodes import Node

    from envkit.api import Environment

__all__ = ["Entry", "How", "Key", "MarkerError", "Pool", "Want", "owner_in_chain", "want_from_mark"]

Key = tuple[str, ...]
How = Literal["up", "reuse", "shared"]


@dataclass(frozen=True, eq=False)
class Want:
    """What a marked test asks for (the param of envkit_env): a blueprint, and who owns its environment."""

    blueprint: Path
    scope: Scope
    owner: str  # node id of the owning module or class; the test's own for scope function

    def __eq__(self, other: object) -> bool:
        # pytest keeps a cached envkit_env while the param compares equal; a test-scoped one never is.
        return (isinstance(other, Want) and self.scope != "function"
                and (self.blueprint, self.scope, self.owner) == (other.blueprint, other.scope, other.owner))

    def __hash__(self) -> int:
        return hash((self.blueprint, self.scope, self.owner))


class MarkerError(ValueError):
    """A ``@pytest.mark.envkit`` that cannot be used; the message is for the test's collection error."""


def want_from_mark(mark: pytest.Mark, marked: Node, test: pytest.Item, rootpath: Path) -> Want:
    """The Want of ``test``, whose closest envkit mark sits on ``marked`` (the test, its class or module)."""
    where = f"{test.nodeid}: @pytest.mark.envkit"
    args = list(mark.args) or ([mark.kwargs["blueprint"]] if "blueprint" in mark.kwargs else [])
    unknown = set(mark.kwargs) - {"blueprint", "scope", "reset"}
    if len(args) != 1 or not isinstance(args[0], str | os.PathLike) or unknown:
        raise MarkerError(f"{where}: expected envkit(blueprint, scope=None, reset=None)")
    try:
        reset_of(mark.kwargs.get("reset"))
    except ValueError as exc:
        raise MarkerError(f"{where}: {exc}") from None
    level: Scope = ("module" if isinstance(marked, pytest.Module)
                    else "class" if isinstance(marked, pytest.Class) else "function")
    scope = mark.kwargs.get("scope") or level
    if scope not in MARKER_SCOPES:
        raise MarkerError(f"{where}: scope {scope!r}: use one of {', '.join(MARKER_SCOPES)}")
    module = test.getparent(pytest.Module)
    klass = test.getparent(pytest.Class)
    owner = {"module": module, "class": klass or module, "function": test}[scope]
    assert owner is not None
    return Want(Path(os.path.normpath(rootpath / args[0])), cast(Scope, scope), owner.nodeid)


def reset_of(value: object) -> tuple[str, ...] | None:
    """The marker's ``reset=``: None (or False) no reset after its tests; "function" (or True) after every
    test, every service with a snapshot, as ``()``; a service name or a list of them: those, after every test."""
    if value is None or value is False:
        return None
    if value is True or value == "function":
        return ()
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError(f"reset={value!r}: use reset=\"function\" (every service with a snapshot, after each test), "
                     "a service name or a list of them")


def owner_in_chain(node: Node, want: Want) -> Node | None:
    """The node owning ``want``'s environment when it is in the fixture's chain (it outlives the
    fixture then); None when envkit_env's scope is wider and pytest will end the fixture for us."""
    if want.scope == "function":
        return node if isinstance(node, pytest.Item) else None
    return next((n for n in node.listchain() if n.nodeid == want.owner), None)


@dataclass
class Entry:
    """One environment this process used, and what became of it (for the summary)."""

    env: Environment
    source: str  # the blueprint path, or "reuse"
    scope: str
    how: How
    seconds: float = 0.0
    failed: bool = False  # a test using it failed
    outcome: str = "in use"  # removed | kept | left running | left to the last worker | may be left
    default: bool = False  # the unmarked tests' environment (not a marker's)
    owed: tuple[str, ...] | None = None  # a reset skipped after a failed test (--envkit-keep), done before the next

    def owe(self, services: tuple[str, ...]) -> None:
        """Add a reset of ``services`` (() every one with a snapshot) to the one owed."""
        if self.owed is None:
            self.owed = services
        elif self.owed and services:
            self.owed = tuple(dict.fromkeys((*self.owed, *services)))
        else:
            self.owed = ()


@dataclass
class Pool:
    entries: dict[Key, Entry] = field(default_factory=dict)
    history: list[Entry] = field(default_factory=list)  # every environment this process used, in order
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def key(self, source: str, holder: Node | None, want: Want | None) -> Key:
        if holder is not None:
            return (source, holder.nodeid)
        return (source, want.owner if want else "", str(next(self._seq)))

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    def add(self, key: Key, entry: Entry) -> None:
        self.entries[key] = entry
        self.history.append(entry)

    def pop(self, key: Key) -> Entry | None:
        return self.entries.pop(key, None)

    def live_keys(self) -> list[Key]:
        return list(self.entries)

    def entry_for(self, env: object) -> Entry | None:
        """The newest entry holding ``env`` (an Environment a test received)."""
        return next((e for e in reversed(self.history) if e.env is env), None)
