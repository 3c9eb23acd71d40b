"""Where seed steps go in a plan (pure, like ``envkit.plan``): between a service's ready and its usable.

    ready:db-1 ─► seed:db.1 ─► seed:db.2 ─► … ─► usable:db ─► (dependants waiting for db ready)

A service's steps run in the order of its ``seed:`` list, one after the other; other services start
meanwhile, and a dependant with ``condition: started`` does not wait for them (it waits on the
container's start, not on ``usable``). ``seed_plan`` makes the plan of ``envkit seed RUN``: the seed
steps alone, for a live run, each service's after those of the services it depends on.

A dependant's seeds may write into the services it depends on (``outward``: a request to its process, a
command in it, a container beside it): ``writers`` names, for a service with a snapshot, the dependants
whose steps a reset of it runs again (``envkit.reset``; docs/snapshots.md#seeds-of-dependants).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from envkit import labels as L
from envkit.backends.base import NetworkAttachment
from envkit.blueprint import refs
from envkit.blueprint.model import Blueprint, Build, HttpSeed, RunSeed, Seed, Service, SqlSeed
from envkit.blueprint.source import Marks
from envkit.blueprint.validate import outward
from envkit.errors import BlueprintError
from envkit.steps import SeedStep, Step

if TYPE_CHECKING:
    from envkit.plan import Plan, RunIdentity

__all__ = ["image_key", "outward", "resolve", "seed_images", "seed_plan", "seed_steps", "shown", "writers"]

def writers(bp: Blueprint, selected: Collection[str], target: str) -> tuple[str, ...]:
    """The services of ``selected``, dependencies first, with ``outward`` steps that may write into
    ``target``: those that depend on it, directly or through others."""
    return tuple(name for name in _in_order(bp, tuple(selected))
                 if name != target and outward(bp.services[name]) and target in bp.closure((name,)))


def image_key(service: str, index: int) -> str:
    """The key of a seed ``run`` step's build in the planner's ``image_tags``."""
    return f"{service}/seed/{index}"


def seed_images(svc: Service, service_image: str, image_tags: dict[str, str]) -> list[tuple[str, str, Build | None]]:
    """(key, tag, build) of every image the service's ``run`` seed steps use."""
    out: list[tuple[str, str, Build | None]] = []
    for i, item in enumerate(svc.seed, 1):
        if isinstance(item, RunSeed):
            key = image_key(svc.name, i)
            if item.build is not None:
                out.append((key, image_tags[key], item.build))
            else:
                out.append((key, item.image or service_image, None))
    return out


def resolve(item: Seed, run_id: str) -> Seed:
    """The step with ``${run.id}`` (and ``${run.name}``) replaced in every text it holds."""
    def text(value: str) -> str:
        return refs.substitute(value, lambda ref: run_id) if "${" in value else value

    def walk(value: object) -> object:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, tuple):
            return tuple(walk(v) for v in value)
        return value

    changes = {f.name: walk(getattr(item, f.name)) for f in dataclasses.fields(item) if f.name != "at"}
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def shown(item: Seed, directory: os.PathLike[str] | str) -> str:
    """The step as the user wrote it: its kind and file relative to the blueprint's folder."""
    def rel(path: os.PathLike[str]) -> str:
        text = os.path.relpath(path, directory)
        return str(path) if text.startswith("..") else text

    if isinstance(item, SqlSeed) and item.file is not None:
        return f"sql {rel(item.file)}"
    if isinstance(item, RunSeed) and item.build is not None:
        return f"run {rel(item.build.context)}" + (f": {' '.join(item.command)}" if item.command else "")
    text = item.describe()
    if hasattr(item, "source"):
        text = f"copy {rel(item.source)} -> {item.target}"  # type: ignore[union-attr]
    return text if len(text) <= 80 else text[:79] + "…"


def _http_port(bp: Blueprint, svc: Service, item: HttpSeed) -> int:
    if item.port is not None:
        return item.port
    ports = sorted({p.container for p in svc.ports} | ({svc.ready.port} if svc.ready and svc.ready.port else set()))
    if len(ports) == 1:
        return ports[0]
    marks = bp.marks if bp.marks.file else Marks(str(bp.file))
    found = ", ".join(map(str, ports)) or "none"
    raise BlueprintError([marks.problem(item.at, f"an http seed step needs 'port' (service {svc.name} has ports: "
                                                 f"{found})")])


def seed_steps(bp: Blueprint, svc: Service, identity: RunIdentity, stamp: dict[str, str], service_image: str,
               image_tags: dict[str, str], image_step: dict[str, str], after: list[str],
               which: Collection[int] | None = None) -> list[Step]:
    """The service's seed steps (``which``: only those, by their 1-based index), chained, the first after
    ``after``."""
    run = identity.run_id
    containers = tuple(L.container_name(run, svc.name, n) for n in range(1, svc.replicas + 1))
    networks = tuple(NetworkAttachment(L.network_name(run, a.network)) for a in svc.networks)
    steps: list[Step] = []
    previous = list(after)
    for i, raw in enumerate(svc.seed, 1):
        if which is not None and i not in which:
            continue
        item = resolve(raw, run)
        extra: dict[str, object] = {}
        needs = list(previous)
        if isinstance(item, HttpSeed):
            item = dataclasses.replace(item, port=_http_port(bp, svc, item))
        if isinstance(item, RunSeed):
            key = image_key(svc.name, i)
            image = image_tags[key] if item.build is not None else (item.image or service_image)
            labels = {**stamp, L.ROLE: "seed", L.KIND: "job"}
            extra = {"image": image, "name": f"envkit-{run}-{svc.name}-seed-{i}", "networks": networks,
                     "labels": tuple(sorted(labels.items()))}
            if key in image_step:
                needs.append(image_step[key])
        payload = SeedStep(svc.name, i, len(svc.seed), item, shown(item, bp.directory), run, containers,
                           bp.directory, svc.environment, **extra)  # type: ignore[arg-type]
        step = Step(f"seed:{svc.name}.{i}", payload, payload.detail, tuple(dict.fromkeys(needs)), (svc.name,))
        steps.append(step)
        previous = [step.id]
    return steps


def seed_plan(bp: Blueprint, identity: RunIdentity, services: tuple[str, ...], existing_images: frozenset[str],
              image_tags: dict[str, str], *, outward_only: bool = False) -> Plan:
    """The seed steps of ``services`` of a live run (``envkit seed RUN [SVC…]``), and the images they lack.
    ``outward_only``: only the steps that may write into the services each depends on (``outward``), as a
    reset of one of those runs them again."""
    from envkit.plan import Plan, _stamp
    from envkit.steps import BuildImage, PullImage

    stamp = _stamp(identity, bp)
    steps: list[Step] = []
    image_step: dict[str, str] = {}
    made: set[str] = set()
    last: dict[str, str] = {}
    for name in _in_order(bp, services):
        svc = bp.services[name]
        service_image = image_tags.get(name) or str(svc.image)
        which = outward(svc) if outward_only else None
        for key, tag, build in seed_images(svc, service_image, image_tags):
            if tag in existing_images or (which is not None and int(key.rsplit("/", 1)[1]) not in which):
                continue
            sid = f"image:{tag}"
            image_step[key] = sid
            if tag in made:
                continue
            made.add(tag)
            if build is not None:
                from envkit.backends.base import BuildSpec

                spec = BuildSpec(tag, build.context, build.dockerfile, build.args, build.target,
                                 ((L.CONTEXT_HASH, tag.rsplit(":", 1)[1]),))
                steps.append(Step(sid, BuildImage(spec), "image of a seed step", services=(name,)))
            else:
                steps.append(Step(sid, PullImage(tag), "image not on the engine", services=(name,)))
        before = [last[d.service] for d in svc.depends_on if d.condition != "started" and d.service in last]
        seeded = seed_steps(bp, svc, identity, stamp, service_image, image_tags, image_step, before, which)
        if seeded:
            steps.extend(seeded)
            last[name] = seeded[-1].id
        elif before:
            last[name] = before[-1]
    return Plan(run_id=identity.run_id, identity=identity, blueprint=bp, services=services, steps=tuple(steps))


def _in_order(bp: Blueprint, services: tuple[str, ...]) -> list[str]:
    """The services, dependencies first (ties by name)."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in bp.services:
            return
        seen.add(name)
        for dep in sorted(d.service for d in bp.services[name].depends_on):
            visit(dep)
        if name in services:
            done.append(name)

    for name in sorted(services):
        visit(name)
    return done
