"""The generic reset path: a service of a live run made again from its snapshot, for any image
(``envkit.reset``'s "restore"; docs/snapshots.md says which services take it).

Where the time goes on a loaded 2-CPU engine (measured, benchmarks/README.md): the new container's
start (0.5-1.5 s: the runtime, a network namespace, the published ports), the old one's forced removal
(0.3-0.5 s, most of it the kill: its network endpoint and ports are torn down), the readiness probe, a
create (0.02-0.6 s), and for a snapshot that holds volumes a fresh copy-on-write view of each
(``Backend.fill_volume``; milliseconds, or one helper container per volume where the engine cannot
mount one: another start, plus the copy). So the reset runs, in this order:

1. side by side: the old container is removed — killed, not stopped: its state is thrown away, so a
   clean stop would only cost its grace period — while the replacement is prepared: each captured
   volume that only this container mounts (an image's anonymous volume) is filled from the snapshot
   into a *fresh* volume of the run, and the new container is created from the snapshot's image under
   a name of its own (``<name>.next-<hex>``), with the run's labels, networks, DNS aliases, the host
   ports its outputs point to, and the IP address it had on each network (where the engine can fix
   one: a network whose subnet was given, as envkit's own pool gives it);
2. once the old container is gone: a volume of the blueprint (others may mount it too) is copied back
   in place; the new container takes the service's name, is started and waited ready. The old
   container's own volumes are deleted in the background (``settle`` waits for that), one reset's
   after the other's.

The state after a reset is exactly the snapshot's: a new container from its image, every volume it
mounts refilled from it. Peers find the service again under the same DNS name and address, and must
reconnect as after any restart. (A stopped service has no address: one a reset made keeps its fixed one in
its configuration, which the next reset reads; one never reset gets the engine's choice, as at any start.)
Only this run's container and volumes are touched; the snapshot is read.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from envkit import labels as L
from envkit.backends.base import Backend, ContainerSpec, ContainerState, PortBinding
from envkit.errors import Conflict, EngineError, EnvkitError, ServiceFailed
from envkit.probes import wait_ready
from envkit.steps import CreateContainer, FillVolume, Step, WaitReady

__all__ = ["Recipe", "recipe_of", "replaced", "restore", "settle", "successor"]


@dataclass(frozen=True)
class Recipe:
    """What a reset of one service makes, taken from the plan of ``up`` from the snapshot."""

    service: str
    spec: ContainerSpec  # the container; host ports and addresses are the old container's at each reset
    fills: tuple[FillVolume, ...]  # each volume filled from the snapshot
    shared: frozenset[str]  # the fills' volumes that are the blueprint's own (copied back in place)
    wait: WaitReady


def recipe_of(service: str, steps: tuple[Step, ...], blueprint_volumes: frozenset[str]) -> Recipe:
    """From the steps of a plan of ``up`` of ``service`` from its snapshot (``make_plan`` with it as a hit)."""
    mine = [s for s in steps if s.services == (service,)]
    create = next(s.payload for s in mine if isinstance(s.payload, CreateContainer))
    wait = next(s.payload for s in mine if isinstance(s.payload, WaitReady))
    fills = tuple(s.payload for s in mine if isinstance(s.payload, FillVolume))
    shared = frozenset(f.spec.name for f in fills if dict(f.spec.labels).get(L.VOLUME) in blueprint_volumes)
    return Recipe(service, create.spec, fills, shared, wait)


def _pinned(spec: ContainerSpec, old: ContainerState, fixed: bool) -> ContainerSpec:
    """The old container's host ports (the run's outputs point to them; those it was made with when it
    publishes none now: stopped by a fault or ``envkit stop``, off its networks) and, when ``fixed``, addresses
    (those it was made with when it has none now: stopped; one never reset had none fixed, and a stopped
    container keeps no other, so the new one gets the engine's choice, as at any start)."""
    bound = {**old.bindings, **old.ports}
    ports = tuple(PortBinding(p.container, p.host_ip, bound[p.container].port if p.container in bound
                              else p.host_port) for p in spec.ports)
    at = {**old.fixed, **old.addresses}
    networks = tuple(replace(a, address=at.get(a.network) or None) if fixed else a for a in spec.networks)
    return replace(spec, ports=ports, networks=networks)


def restore(backend: Backend, recipe: Recipe, old: ContainerState, abort: threading.Event | None = None,
            timings: dict[str, float] | None = None) -> str:
    """Make ``recipe.service`` again from its snapshot in place of container ``old`` (its inspected
    state: ports, addresses, mounts); returns the new container's id. ``timings``: filled with the
    seconds of each part (``prepare``, ``remove``, ``copy``, ``start``, ``ready``)."""
    abort = abort or threading.Event()
    took = timings if timings is not None else {}
    token = secrets.token_hex(3)
    fresh = {f.spec.name: f"{f.spec.name}-{token}" for f in recipe.fills if f.spec.name not in recipe.shared}
    mounts = tuple(replace(m, source=fresh.get(m.source, m.source)) if m.type == "volume" else m
                   for m in recipe.spec.mounts)
    spec = replace(_pinned(recipe.spec, old, fixed=True), name=f"{recipe.spec.name}.next-{token}", mounts=mounts)
    made: list[str] = []  # fresh volumes: removed again if the reset fails

    def timed(part: str, fn: Callable[[], object]) -> None:
        began = time.monotonic()
        fn()
        took[part] = time.monotonic() - began

    def prepare() -> str:
        for f in recipe.fills:
            if f.spec.name in fresh:
                made.append(fresh[f.spec.name])
                backend.fill_volume(replace(f.spec, name=fresh[f.spec.name]), f.source)
        return backend.create_container(spec)

    def cleanup() -> None:
        """The old container's own volumes, each replaced by a fresh one: never the blueprint's, never
        another run's or a snapshot's."""
        run = old.labels.get(L.RUN, "")
        ours = {r.name for r in backend.list_resources({L.MANAGED: "true", L.RUN: run}) if r.kind == "volume"}
        for m in old.mounts:
            if m.type == "volume" and m.source in ours and m.source not in recipe.shared and m.source not in made:
                backend.remove_volume(m.source)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="envkit-reset") as pool:
        began = time.monotonic()
        removing = pool.submit(timed, "remove", lambda: backend.remove_container(old.id, 0))
        preparing: Future[str] = pool.submit(prepare)
        try:
            new = preparing.result()
            took["prepare"] = time.monotonic() - began
        except EnvkitError as exc:
            with contextlib.suppress(EnvkitError):
                removing.result()
            _undo(backend, made, None)
            raise ServiceFailed(recipe.service, f"reset: cannot make its container from the snapshot: {exc}",
                                container=recipe.spec.name) from exc
        try:
            removing.result()
            began = time.monotonic()
            for f in recipe.fills:
                if f.spec.name in recipe.shared:
                    backend.copy_volume(f.source, f.spec.name)
            took["copy"] = time.monotonic() - began
            try:
                backend.rename_container(new, recipe.spec.name)
            except Conflict:
                if (winner := _made_elsewhere(backend, recipe.spec.name, old)) is None:
                    raise
                # Another process reset the service meanwhile (it had inspected the same old container):
                # its container from the snapshot is the reset asked for; ours goes, unstarted.
                _undo(backend, made, new)
                timed("ready", lambda: wait_ready(backend, winner, recipe.service, recipe.wait.probe,
                                                  recipe.wait.timeout, abort))
                return winner
            began = time.monotonic()
            new = _start(backend, new, replace(spec, name=recipe.spec.name, networks=recipe.spec.networks),
                         any(a.address for a in spec.networks))
            took["start"] = time.monotonic() - began
        except EnvkitError as exc:
            _undo(backend, made, new)
            raise ServiceFailed(recipe.service, f"reset: cannot start it again from the snapshot: {exc}",
                                container=recipe.spec.name) from exc
        _behind(cleanup)
        timed("ready", lambda: wait_ready(backend, new, recipe.service, recipe.wait.probe, recipe.wait.timeout, abort))
    return new


#: the removal of the last reset's old volumes, still under way (deleting a database's files takes seconds)
_removing: list[threading.Thread] = []
_removing_lock = threading.Lock()


def _behind(work: Callable[[], None]) -> None:
    """Run ``work`` (removals only) in the background, after the earlier ones: a reset returns while the
    old volumes' files are still being deleted, and deletions never run side by side. Only removals go
    there: one that loses a race with the run's teardown finds the volume gone, which is success; one cut
    short by the process's exit leaves a volume of the run, which the run's teardown removes."""
    with _removing_lock:
        before = list(_removing)

    def run() -> None:
        for earlier in before:
            earlier.join()
        with contextlib.suppress(EnvkitError):  # a volume still held: the run's teardown takes it later
            work()

    thread = threading.Thread(target=run, name="envkit-reset-cleanup", daemon=True)
    with _removing_lock:
        _removing[:] = [t for t in _removing if t.is_alive()] + [thread]
    thread.start()


def settle(timeout: float | None = None) -> None:
    """Wait until the background removals of earlier resets are done."""
    with _removing_lock:
        pending = list(_removing)
    for thread in pending:
        thread.join(timeout)
    with _removing_lock:
        _removing[:] = [t for t in _removing if t.is_alive()]


def _start(backend: Backend, new: str, unpinned: ContainerSpec, pinned: bool) -> str:
    """Start ``new``; when the engine cannot give it its old addresses (a network whose subnet it chose
    itself, or an address taken meanwhile), make it again as ``unpinned`` (the engine's choice)."""
    try:
        backend.start_container(new)
        return new
    except EngineError:
        if not pinned:
            raise
        backend.remove_container(new, 0)
    made = backend.create_container(unpinned)
    backend.start_container(made)
    return made


def _made_elsewhere(backend: Backend, name: str, old: ContainerState) -> str | None:
    """The container under the service's name that another process's reset made from the same snapshot
    in place of ``old``, if that is what holds the name."""
    return successor(backend, name, old.labels, old.id)


def successor(backend: Backend, name: str, labels: Mapping[str, str], old_id: str) -> str | None:
    """The container of the service (``labels``: the old one's) under ``name``, made from the same
    snapshot in place of container ``old_id``."""
    found = [c for c in backend.list_containers({L.MANAGED: "true", L.RUN: labels.get(L.RUN, ""),
                                                 L.SERVICE: labels.get(L.SERVICE, "")})
             if c.name == name and c.id != old_id and L.SNAPSHOT in labels
             and c.labels.get(L.SNAPSHOT) == labels[L.SNAPSHOT]]
    return found[0].id if len(found) == 1 else None


def replaced(backend: Backend, recipe: Recipe, old_id: str, abort: threading.Event | None = None,
             timeout: float = 60.0) -> str | None:
    """For a reset whose container ``old_id`` was removed before it could look at it: another process's
    reset of the service (which saw the same container) replaced it. Waits for that one's container from
    the snapshot to hold the service's name and be ready, and returns it; None when none comes (then the
    container went some other way, and the caller says so)."""
    abort = abort or threading.Event()
    labels = dict(recipe.spec.labels)
    until = time.monotonic() + timeout
    while (found := successor(backend, recipe.spec.name, labels, old_id)) is None:
        if time.monotonic() > until or abort.wait(0.1):
            return None
    wait_ready(backend, found, recipe.service, recipe.wait.probe, recipe.wait.timeout, abort)
    return found


def _undo(backend: Backend, volumes: list[str], container: str | None) -> None:
    with contextlib.suppress(EnvkitError):
        if container is not None:
            backend.remove_container(container, 0)
        for v in volumes:
            backend.remove_volume(v)
