"""The Swarm backend's translations: a ``ContainerSpec`` into a service's task template, a service and
its newest task into a ``ContainerState``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from docker.types import ContainerSpec as SwarmContainerSpec
from docker.types import Healthcheck, Mount, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate

from envkit import labels as L
from envkit.backends._swarm_nodes import NodeMap
from envkit.backends._swarm_place import ENDED, NodeInfo
from envkit.backends.base import ContainerSpec, ContainerState, ContainerStatus, Endpoint, MountSpec, PortKey

__all__ = ["ENDED", "state", "task_template"]

#: Swarm expands Go templates ({{.Node.Hostname}}) in a task's environment, hostname and mounts (target,
#: volume labels): a value with "{{"
#: (a stub's routes, a template of the application's own) is kept literal by writing its "{{" as an action
_OPEN, _OPEN_LITERAL = "{{", '{{"{{"}}'


def _literal(text: str | None) -> str | None:
    return _text(text) if text is not None else None


def _text(text: str) -> str:
    return text.replace(_OPEN, _OPEN_LITERAL)


def task_template(spec: ContainerSpec, constraints: tuple[str, ...] = ()) -> tuple[TaskTemplate, ServiceMode]:
    """One task of ``spec``, never restarted by Swarm (envkit sees an exit as on one engine); a job
    (``io.envkit.kind=job``) is a ``replicated-job`` service, anything else one replica. Placement: the
    blueprint's constraints and ``constraints`` (envkit's own: ``_swarm_place``)."""
    labels = dict(spec.labels)
    mounts = [Mount(target=_text(m.target), source=m.source, type="volume", read_only=m.read_only,
                    labels={k: _text(v) for k, v in labels.items()}) for m in spec.mounts]
    container = SwarmContainerSpec(
        spec.image, command=list(spec.entrypoint) if spec.entrypoint is not None else None,
        args=list(spec.command) if spec.command is not None else None, hostname=_literal(spec.hostname),
        env={k: _literal(v) for k, v in spec.environment}, workdir=spec.working_dir, user=spec.user, labels=labels,
        mounts=mounts or None, stop_signal=spec.stop_signal, cap_add=list(spec.cap_add) or None,
        read_only=spec.read_only or None, cap_drop=list(spec.cap_drop) or None, init=spec.init or None,
        stop_grace_period=int((spec.stop_timeout if spec.stop_timeout is not None else 10) * 1e9),
        healthcheck=Healthcheck(test=["NONE"]) if spec.healthcheck_off else None)
    if spec.ulimits:  # the API has them (1.41); the SDK's ContainerSpec does not take them
        container["Ulimits"] = [{"Name": n, "Soft": s, "Hard": h} for n, s, h in spec.ulimits]
    if spec.tmpfs:
        container["Mounts"] = [*container.get("Mounts", []), *(
            {"Type": "tmpfs", "Target": _text(path)} for path, _options in spec.tmpfs)]
    resources = Resources(mem_limit=spec.memory, cpu_limit=int(spec.cpus * 1e9) if spec.cpus else None)
    wanted = [*(spec.placement.constraints if spec.placement else ()), *constraints]
    template = TaskTemplate(container, resources=resources, restart_policy=RestartPolicy(condition="none"),
                            networks=[{"Target": a.network, "Aliases": list(a.aliases)} for a in spec.networks],
                            placement=Placement(constraints=wanted) if wanted else None)
    job = labels.get(L.KIND) == "job"
    mode = ServiceMode("replicated-job") if job else ServiceMode("replicated", replicas=1)
    return template, mode


def state(node_of: Callable[[str], NodeInfo | None], nodes: NodeMap, service: Mapping[str, Any],
          task: Mapping[str, Any] | None) -> ContainerState:
    """The container state of a service from its newest task (ports: where this machine reaches them).
    A task not ended on a node that is not ready is lost with it: ``dead``, ``lost`` saying which node."""
    spec = service["Spec"]
    cspec = spec["TaskTemplate"]["ContainerSpec"]
    status: ContainerStatus = "created"
    exit_code: int | None = None
    addresses: dict[str, str] = {}
    ports: dict[PortKey, Endpoint] = {}
    started = finished = ""
    lost: str | None = None
    if task is not None:
        st = task.get("Status") or {}
        state = str(st.get("State", ""))
        node = node_of(str(task.get("NodeID", ""))) if state not in ENDED else None
        if node is not None and not node.up:
            status, lost = "dead", node.lost()
        elif state == "running":
            status, started = "running", str(st.get("Timestamp", ""))
            for p in (st.get("PortStatus") or {}).get("Ports") or []:
                if node is not None:
                    host, port = nodes.reach(node.hostname, node.address, int(p["PublishedPort"]))
                    ports[PortKey(int(p["TargetPort"]), p.get("Protocol", "tcp"))] = Endpoint(host, port)
        elif state in ENDED:
            status, finished = "exited", str(st.get("Timestamp", ""))
            code = (st.get("ContainerStatus") or {}).get("ExitCode")
            exit_code = int(code) if code is not None else (0 if state == "complete" else -1)
        for att in task.get("NetworksAttachments") or []:
            if att.get("Addresses"):
                addresses[att["Network"]["Spec"]["Name"]] = str(att["Addresses"][0]).split("/")[0]
    env = {k: v.replace(_OPEN_LITERAL, _OPEN) for k, v in (str(e).partition("=")[::2] for e in cspec.get("Env") or [])}
    mounts = tuple(MountSpec("volume", m["Source"], m["Target"].replace(_OPEN_LITERAL, _OPEN), bool(m.get("ReadOnly")))
                   for m in cspec.get("Mounts") or [] if m.get("Type") == "volume")
    return ContainerState(spec["Name"], spec["Name"], status, exit_code, None, addresses, ports,
                          dict(spec.get("Labels") or {}), started_at=started or None, oom_killed=False,
                          finished_at=finished, environment=env, mounts=mounts, lost=lost)
