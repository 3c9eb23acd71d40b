"""What a blueprint needs of an engine, checked before anything is created.

``NEEDS`` is the one table from a blueprint key to the backend ``Capability`` it cannot do without.
``check()`` runs at plan time (``make_plan``) on the selected services, against the capabilities the
caller's backend declares; a key the engine cannot serve is a ``BlueprintError`` at the key's
position in the file::

    shop.yaml:14:7 services.api.faults[0]: engine swarm cannot pause containers

Positions come from the marks the loader keeps on the ``Blueprint`` (``Blueprint.marks``); the model's
items carry their key paths (``at``), which the marks turn into line and column.

Abilities with a fallback are not needs: the pre-start gate (``Capability.GATE``) is planned when the
engine has it and otherwise the plain start order is (see ``gating``). Seed steps that copy files in
need ``COPY_FILES``; the snapshot and fault keys of later issues each add one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from envkit.backends.base import Capability
from envkit.blueprint.model import Blueprint, Key, Service
from envkit.blueprint.source import Marks
from envkit.errors import BlueprintError, Problem

__all__ = ["NEEDS", "Need", "check", "gating"]


@dataclass(frozen=True)
class Need:
    """A blueprint key that cannot work without ``capability``.

    ``key`` is the pattern for the docs (``services.*.faults``); ``where`` returns the key paths in
    one service that use it (none: the service does not need the capability).
    """

    key: str
    capability: Capability
    where: Callable[[Service], Iterable[Key]]


def _seeds_copying(svc: Service) -> Iterable[Key]:
    """Seed steps that copy files into the container: sql, copy, exec with stdin (a run step needs none)."""
    from envkit.blueprint.model import CopySeed, ExecSeed, SqlSeed

    return [s.at for s in svc.seed
            if isinstance(s, SqlSeed | CopySeed) or (isinstance(s, ExecSeed) and s.stdin is not None)]


def _binds(svc: Service) -> Iterable[Key]:
    return [m.at or ("services", svc.name, "volumes", i) for i, m in enumerate(svc.volumes) if m.type == "bind"]


def _tls_stubs(svc: Service) -> Iterable[Key]:
    """A TLS stub gets its certificate copied in before it starts."""
    return [svc.stub.tls.at] if svc.stub is not None and svc.stub.tls is not None else []


def _builds(svc: Service) -> Iterable[Key]:
    """A build context (``kind: stub`` too: its server image is built), on an engine that only pulls."""
    return [("services", svc.name, "kind" if svc.kind == "stub" else "build")] if svc.build is not None else []


def _snapshot(svc: Service) -> Iterable[Key]:
    return [svc.snapshot.at or ("services", svc.name, "snapshot")] if svc.snapshot else []


NEEDS: tuple[Need, ...] = (
    Need("services.*.seed", Capability.COPY_FILES, _seeds_copying),
    Need("services.*.stub.tls", Capability.COPY_FILES, _tls_stubs),
    Need("services.*.volumes", Capability.HOST_PATHS, _binds),
    Need("services.*.build", Capability.BUILD, _builds),
    Need("services.*.snapshot", Capability.EXPORT_FILESYSTEM, _snapshot),  # captured as an image of the container
)


def gating(capabilities: frozenset[Capability]) -> bool:
    """Whether the plan may pre-start containers behind a gate (else: plain start in order)."""
    return Capability.GATE in capabilities


def check(bp: Blueprint, services: Iterable[str], engine: str, capabilities: frozenset[Capability],
          needs: Sequence[Need] | None = None) -> None:
    """Raise BlueprintError naming every key of ``services`` whose capability ``engine`` lacks."""
    problems: list[Problem] = []
    marks = bp.marks if bp.marks.file else Marks(str(bp.file))  # a model built by hand: file, no lines
    for need in NEEDS if needs is None else needs:
        if need.capability in capabilities:
            continue
        for name in services:
            for path in need.where(bp.services[name]):
                problems.append(marks.problem(path, f"engine {engine} cannot {need.capability.value}"))
    if problems:
        raise BlueprintError(problems)
