"""Cross-reference checks on the typed model: services, networks, volumes, ports and outputs that refer
to each other. Every problem is reported, with the position of the reference that is wrong."""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import re
from pathlib import Path

from envkit.blueprint import refs
from envkit.blueprint.model import Blueprint, ExecSeed, HttpSeed, RunSeed, Seed, Service, SqlSeed
from envkit.blueprint.source import Marks
from envkit.errors import Problem

__all__ = ["OUTWARD_REFUSAL", "check", "outward", "outward_refusal", "run_id_seed", "snapshot_refusal"]

WILDCARDS = {"0.0.0.0", "::"}


def _hint(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _service_hint(name: str, services: list[str]) -> str:
    """A close match, or else the services there are to choose from."""
    return _hint(name, services) or f" (services: {', '.join(services)})"


def check(bp: Blueprint, marks: Marks, declared: dict[str, set[str]] | None = None) -> list[Problem]:
    """``declared``: names present in the file whose own definitions were invalid (already reported)."""
    problems: list[Problem] = []
    declared = declared or {}
    skipped = {kind: names - set(getattr(bp, kind)) for kind, names in declared.items()}

    def err(path: tuple[str | int, ...], msg: str) -> None:
        problems.append(marks.problem(path, msg))

    names = sorted(bp.services)

    for svc in bp.services.values():
        base = ("services", svc.name)
        for d in svc.depends_on:
            dep, cond, path = d.service, d.condition, d.at or (*base, "depends_on", d.service)
            if dep in skipped.get("services", ()):
                continue
            if dep == svc.name:
                err(path, f"service '{dep}' cannot depend on itself")
            elif dep not in bp.services:
                err(path, f"unknown service '{dep}'{_service_hint(dep, names)}")
            elif cond == "completed" and bp.services[dep].kind != "job":
                err(path, f"condition 'completed' needs a job, but '{dep}' is a long-running service "
                          f"(add 'kind: job' to it or use condition 'ready')")
        if svc.snapshot is not None and (svc.kind == "job" or svc.replicas > 1):
            err(svc.snapshot.at or (*base, "snapshot"), snapshot_refusal(svc.kind, svc.replicas))
        elif svc.snapshot is not None and (i := run_id_seed(getattr(svc, "seed", ()))) is not None:
            err(svc.seed[i].at or (*base, "seed", i), RUN_ID_REFUSAL)
        elif svc.snapshot is not None and (out := outward(svc)):
            err(svc.seed[out[0] - 1].at or (*base, "seed", out[0] - 1), outward_refusal(svc))
        for a in svc.networks:
            net = a.network
            if net not in bp.networks and net not in skipped.get("networks", ()):
                err(a.at or (*base, "networks", net), f"undefined network '{net}'{_hint(net, sorted(bp.networks))}"
                          f" (declare it under the top-level 'networks:')")
        for i, mount in enumerate(svc.volumes):
            if mount.type == "volume" and mount.source not in bp.volumes and mount.source not in skipped.get("volumes", ()):
                err(mount.at or (*base, "volumes", i),
                    f"undefined volume '{mount.source}'{_hint(mount.source, sorted(bp.volumes))}"
                    f" (declare it under the top-level 'volumes:')")
        seen_ports: set[str] = set()
        for i, port in enumerate(svc.ports):
            at = port.at or (*base, "ports", i)
            if port.key in seen_ports:
                err(at, f"container port {port.key} is listed twice")
            seen_ports.add(port.key)
            if port.host is not None and svc.replicas > 1:
                err(at, f"host port {port.host} is pinned but the service has "
                                         f"{svc.replicas} replicas; leave the host port out (ephemeral)")

    # A wildcard address (0.0.0.0, ::) takes the port on every address, so it clashes with any other.
    pinned: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for svc in bp.services.values():
        for i, port in enumerate(svc.ports):
            if port.host is None:
                continue
            taken = pinned.setdefault((port.host, port.protocol), [])
            clash = next((owner for ip, owner in taken if port.host_ip == ip or {ip, port.host_ip} & WILDCARDS), None)
            if clash is not None:
                err(port.at or ("services", svc.name, "ports", i),
                    f"host port {port.host_ip}:{port.host}/{port.protocol} is already pinned by service "
                    f"'{clash}'; pin another port or leave it out (ephemeral)")
            else:
                taken.append((port.host_ip, svc.name))

    cycle = _find_cycle(bp)
    if cycle:
        err(("services", cycle[0], "depends_on"), "dependency cycle: " + " -> ".join(cycle))

    for key, template in bp.outputs:
        for match in refs.REF.finditer(template):
            message = _check_ref(bp, match.group("ref"), skipped.get("services", set()))
            if message:
                err(("outputs", key), message)
    return problems


def _check_ref(bp: Blueprint, body: str, skipped: set[str]) -> str | None:
    shape_error: str | None = None  # a services.NAME.… of no known form: said once NAME is known to exist
    port: int | None = None
    tls = False
    try:
        ref = refs.parse(body)
    except refs.BadRef as bad:
        if bad.service is None:
            return str(bad)
        service, shape_error = bad.service, str(bad)
    else:
        if isinstance(ref, refs.RunRef):
            return None
        service = ref.service
        port = ref.port if isinstance(ref, refs.PortRef) else None
        tls = isinstance(ref, refs.ServiceRef) and ref.attr in ("ca_pem", "ca_file")
    if service in skipped:
        return None
    if service not in bp.services:
        return f"unknown service '{service}' in '${{{body}}}'{_service_hint(service, sorted(bp.services))}"
    svc = bp.services[service]
    if shape_error is not None:
        return shape_error
    if tls and (svc.stub is None or svc.stub.tls is None):
        return f"service '{service}' is no TLS stub: '${{{body}}}' needs 'kind: stub' with 'stub: {{tls: true}}'"
    if port is not None and svc.port(port) is None:
        published = ", ".join(str(p.container) for p in svc.ports) or "none"
        return f"service '{service}' publishes no port {port} (its ports: {published}); add it to its 'ports:'"
    return None


def _find_cycle(bp: Blueprint) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in (d.service for d in bp.services[name].depends_on):
            if dep not in bp.services or dep == name:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(bp.services):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


#: why a seed step that writes the run id cannot be part of a snapshot (docs/snapshots.md)
RUN_ID_REFUSAL = ("this step writes the run id (${run.id}, or psql's :'run_id'), but the service has a snapshot, "
                  "which every later run starts from: they would all hold the id of the run that captured it; "
                  "drop 'snapshot', or write the run id from a seed of a service without one")
_PSQL_RUN_ID = re.compile(r"""(?<!:):(?:'run_id'|"run_id"|run_id\b)""")


def run_id_seed(seed: tuple[Seed, ...]) -> int | None:
    """The index of the first step that writes the run's id: a ``${run.id}`` (``${run.name}``) in any of
    its values, or psql's variable ``run_id`` in its SQL file; None when no step does."""
    def holds(value: object) -> bool:
        if isinstance(value, str):
            return any(isinstance(_parsed(m.group("ref")), refs.RunRef) for m in refs.REF.finditer(value))
        if isinstance(value, tuple | list):
            return any(holds(v) for v in value)
        if isinstance(value, dict):
            return any(holds(k) or holds(v) for k, v in value.items())
        return False

    for i, item in enumerate(seed):
        if any(holds(getattr(item, f.name)) for f in dataclasses.fields(item) if f.name != "at"):
            return i
        if isinstance(item, SqlSeed) and item.file is not None and _PSQL_RUN_ID.search(_sql_text(item.file)):
            return i
    return None


def _parsed(body: str) -> refs.Ref | None:
    try:
        return refs.parse(body)
    except refs.BadRef:
        return None


def _sql_text(path: Path) -> str:
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""  # the seed step itself reports an unreadable file when it runs
    return data.decode("utf-8", "replace")


#: the kinds that act through the service's process or its networks, not on its files or with its own SQL client
_OUTWARD = (HttpSeed, ExecSeed, RunSeed)


def outward(svc: Service) -> tuple[int, ...]:
    """The seed steps (1-based) of ``svc`` that may write into the services it depends on: its ``http``
    steps (its process may store what it is sent there), ``exec`` (a command in it, such as a fixture
    loader) and ``run`` steps (a container on its networks), when it depends on any, but those marked
    ``writes: own``. ``sql`` and ``copy`` act on its own container only."""
    if not svc.depends_on:
        return ()
    return tuple(i for i, item in enumerate(getattr(svc, "seed", ()), 1)
                 if isinstance(item, _OUTWARD) and item.writes != "own")


#: why a service whose seeds may write into its dependencies cannot have a snapshot (docs/snapshots.md)
OUTWARD_REFUSAL = ("this step may write into the services {service} depends on ({deps}), which its snapshot cannot "
                   "hold: a later run would start {service} from it, skip the step and miss those writes; drop "
                   "'snapshot' from {service}: its seeds then run in every run, and a reset of a service they may "
                   "write into runs them again; or, if the step writes into {service} alone, mark it "
                   "'writes: own' (docs/snapshots.md)")


def outward_refusal(svc: Service) -> str:
    return OUTWARD_REFUSAL.format(service=svc.name, deps=", ".join(sorted(d.service for d in svc.depends_on)))


def snapshot_refusal(kind: str, replicas: int) -> str:
    """Why a job or a service with several replicas cannot have a snapshot (docs/snapshots.md)."""
    if kind == "job":
        return ("a job has no state to snapshot: it runs to completion and its container is done; snapshot the "
                "service it writes to")
    return (f"cannot snapshot a service with {replicas} replicas: its sql, exec, http and run seeds reach replica 1 "
            "only, so the replicas hold no one seeded state to capture (docs/snapshots.md); use replicas: 1, or "
            "one service per seeded instance")
