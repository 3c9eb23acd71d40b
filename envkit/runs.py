"""Finding, describing and tearing down runs — by the engine's labels only, from any process.

Teardown removes containers (killed unless the blueprint asked for a graceful stop), then networks,
then volumes, each group in parallel; "already gone" is success; it ends by checking that nothing
labelled with the run remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from envkit import labels as L
from envkit.backends.base import Backend, ContainerState, Resource
from envkit.errors import EngineError, NotFound, RunNotFound
from envkit.events import Event, EventSink, ignore

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["RunInfo", "RunSummary", "describe", "list_runs", "teardown"]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    blueprint: str
    created_at: str
    containers: int
    running: int
    networks: int
    volumes: int
    expires_at: str = ""  # "" = never (envkit.gc)


@dataclass(frozen=True)
class RunInfo:
    """A live run as the engine's labels describe it."""

    run_id: str
    blueprint: str
    blueprint_path: str
    created_at: str
    owner: str
    containers: tuple[ContainerState, ...]
    output_templates: tuple[tuple[str, str], ...]
    host: str
    networks: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    services: dict[str, list[ContainerState]] = field(default_factory=dict)
    #: secret name → where its value is (``SERVICE/KEY[/START:END]``, envkit.secrets), from the labels
    secret_locators: dict[str, str] = field(default_factory=dict)
    #: the outputs marked ``secret: true``: shown masked whole
    secret_outputs: frozenset[str] = frozenset()

    def replicas(self, service: str) -> list[ContainerState]:
        return self.services.get(service, [])


def list_runs(backend: Backend) -> list[RunSummary]:
    groups: dict[str, list[Resource]] = {}
    for res in backend.list_resources({L.MANAGED: "true", L.RUN: None}):
        groups.setdefault(res.labels[L.RUN], []).append(res)
    running = {c.id for c in backend.list_containers({L.MANAGED: "true"}) if c.running}
    out = []
    for run_id, items in sorted(groups.items()):
        first = items[0].labels
        out.append(RunSummary(
            run_id=run_id, blueprint=first.get(L.BLUEPRINT, "?"), created_at=first.get(L.CREATED_AT, ""),
            containers=sum(r.kind == "container" and r.labels.get(L.ROLE) != "holder" for r in items),
            running=sum(r.kind == "container" and r.id in running for r in items),
            networks=sum(r.kind == "network" for r in items), volumes=sum(r.kind == "volume" for r in items),
            expires_at=first.get(L.EXPIRES_AT, ""),
        ))
    return out


def describe(backend: Backend, run_id: str) -> RunInfo:
    resources = backend.list_resources({L.MANAGED: "true", L.RUN: run_id})
    if not resources:
        raise RunNotFound(f"no run '{run_id}' on this engine (see `envkit ls`)")
    # A listing carries no exit codes: inspect each container (side by side) for the whole state.
    listed = backend.list_containers({L.MANAGED: "true", L.RUN: run_id})
    # Fault helpers (envkit/faults) and the holders of volumes filled from a snapshot are no replicas.
    listed = [c for c in listed if c.labels.get(L.ROLE) not in ("fault", "holder")]
    # Nor is a reset's new container before it is named (envkit.restore), unless it is all that is left of
    # its replica (the process resetting it was killed between the old one's removal and the rename): then
    # it stands for the replica, not started, and the next reset makes the replica again in its place.
    named = {(c.labels.get(L.SERVICE), c.labels.get(L.REPLICA)) for c in listed if ".next-" not in c.name}
    listed = [c for c in listed if ".next-" not in c.name or (c.labels.get(L.SERVICE), c.labels.get(L.REPLICA))
              not in named]
    detailed = [c for c in _map(lambda c: _inspect(backend, c), listed, 8) if c is not None]
    containers = sorted(detailed, key=lambda c: (c.labels.get(L.SERVICE, ""), int(c.labels.get(L.REPLICA, "0") or 0)))
    services: dict[str, list[ContainerState]] = {}
    for c in containers:
        services.setdefault(c.labels.get(L.SERVICE, "?"), []).append(c)
    labels = (containers[0].labels if containers else resources[0].labels)
    templates = tuple(sorted((k[len(L.OUTPUT_PREFIX):], v) for k, v in labels.items() if k.startswith(L.OUTPUT_PREFIX)))
    return RunInfo(
        run_id=run_id, blueprint=labels.get(L.BLUEPRINT, "?"), blueprint_path=labels.get(L.BLUEPRINT_PATH, ""),
        created_at=labels.get(L.CREATED_AT, ""), owner=labels.get(L.OWNER, ""), containers=tuple(containers),
        output_templates=templates, host=backend.host,
        networks=tuple(r.name for r in resources if r.kind == "network"),
        volumes=tuple(r.name for r in resources if r.kind == "volume"), services=services,
        secret_locators={k[len(L.SECRET_PREFIX):]: v for k, v in labels.items() if k.startswith(L.SECRET_PREFIX)},
        secret_outputs=frozenset(k[len(L.SECRET_OUTPUT_PREFIX):] for k in labels if k.startswith(L.SECRET_OUTPUT_PREFIX)),
    )


def _inspect(backend: Backend, listed: ContainerState) -> ContainerState | None:
    try:
        return backend.inspect_container(listed.id)
    except NotFound:
        return None  # removed since the listing


def teardown(backend: Backend, run_ids: Sequence[str], on_event: EventSink = ignore,
             missing_ok: bool = False, also: Mapping[str, str] | None = None) -> dict[str, int]:
    """Remove every resource of the given runs; returns counts by kind. Raises RunNotFound for a run
    with no resources unless ``missing_ok``; raises EngineError if anything is left afterwards.
    ``also``: further labels a resource must carry (rollback passes its owner and creation time, so
    that it never removes a same-named run another process made)."""
    counts = {"container": 0, "network": 0, "volume": 0}
    if len(run_ids) <= 1:
        results = [_teardown_one(backend, r, on_event, missing_ok, also or {}) for r in run_ids]
    else:  # runs are independent: remove them side by side
        results = _map(lambda r: _teardown_one(backend, r, on_event, missing_ok, also or {}), list(run_ids), 8)
    for result in results:
        for kind, n in result.items():
            counts[kind] += n
    return counts


def _teardown_one(backend: Backend, run_id: str, on_event: EventSink, missing_ok: bool,
                  also: Mapping[str, str]) -> dict[str, int]:
    began = time.monotonic()
    selector: dict[str, str | None] = {L.MANAGED: "true", L.RUN: run_id, **also}

    def listing() -> list[Resource]:
        return backend.list_resources(selector) + (_unstamped(backend, run_id, also) if also else [])

    resources = listing()
    if not resources and not missing_ok:
        raise RunNotFound(f"no run '{run_id}' on this engine (see `envkit ls`)")
    on_event(Event("teardown", run_id, f"removing {len(resources)} resources of run {run_id}", phase="start",
                   detail=str(len(resources))))
    counts = {"container": 0, "network": 0, "volume": 0}
    for attempt in range(3):
        by_kind: dict[str, list[Resource]] = {"container": [], "network": [], "volume": []}
        for r in resources:
            by_kind[r.kind].append(r)
        errors: list[str] = []
        for kind in ("container", "network", "volume"):
            items = by_kind[kind]
            if not items:
                continue
            for r, err in zip(items, _map(lambda r: _attempt(backend, r), items, 16), strict=True):
                    if err:
                        errors.append(f"{r.kind} {r.name}: {err}")
                    else:
                        counts[kind] += 1
                        on_event(Event("removed", run_id, f"removed {r.kind} {r.name}", target=r.name, detail=r.kind))
        resources = listing()
        if not resources:
            if not also:  # this user's copies of its TLS stubs' CA certificates (envkit.stubs.tls.ca_file)
                from envkit.stubs.tls import forget

                forget(run_id)
            on_event(Event("teardown", run_id, f"run {run_id} removed", phase="done",
                           duration=time.monotonic() - began))
            return counts
        time.sleep(0.2 * (attempt + 1))  # e.g. another teardown of the same run is still under way
        if attempt == 2:
            left = ", ".join(f"{r.kind} {r.name}" for r in resources)
            raise EngineError(f"run {run_id}: could not remove {left}" + (f" ({'; '.join(errors)})" if errors else ""))
    return counts


def _unstamped(backend: Backend, run_id: str, also: Mapping[str, str]) -> list[Resource]:
    """A guarded teardown's share of the run's helpers that carry no owner (fault sidecars, records, front
    networks): theirs too, unless another generation of the run (a same-named run of another owner) is
    still there to own them."""
    everything = backend.list_resources({L.MANAGED: "true", L.RUN: run_id})
    if any(any(r.labels.get(k, v) != v for k, v in also.items()) for r in everything):
        return []
    return [r for r in everything if L.OWNER not in r.labels and L.CREATED_AT not in r.labels]


def _map(fn: Callable[[T], R], items: list[T], width: int) -> list[R]:
    """``fn`` over ``items`` side by side; one by one once the interpreter is shutting down (atexit
    teardown), when no new thread may be started."""
    if len(items) > 1:
        try:
            with ThreadPoolExecutor(max_workers=min(width, len(items)), thread_name_prefix="envkit-down") as pool:
                return list(pool.map(fn, items))
        except RuntimeError as exc:  # "cannot schedule new futures after interpreter shutdown"
            if "shutdown" not in str(exc):
                raise
    return [fn(item) for item in items]


def _grace(resource: Resource) -> float:
    try:
        return float(resource.labels.get(L.STOP_GRACE, "0") or 0)
    except ValueError:
        return 0.0


def _attempt(backend: Backend, resource: Resource) -> str | None:
    """Remove one resource; None when done, else why not (e.g. still Busy: the next pass tries again).
    The backend already treats NotFound as success and retries Busy and Transient failures."""
    try:
        if resource.kind == "container":
            backend.remove_container(resource.id, _grace(resource))
        elif resource.kind == "network":
            backend.remove_network(resource.id)
        else:
            backend.remove_volume(resource.id)
    except EngineError as exc:
        return str(exc)
    return None
