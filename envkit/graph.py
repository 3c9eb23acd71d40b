"""A blueprint's topology as a picture: Mermaid or Graphviz DOT text (``envkit graph``).

``topology()`` is pure: it reads the typed model into nodes and edges — every service (shaped by its
kind: a service, a job, or any other kind such as a stub, drawn generically), every network and named
volume, dependencies labelled with their condition, network and volume attachments. Each service's
node says how its image comes about, its replicas and its published ports (``8080 → 127.0.0.1:ephemeral``,
or the pinned host port's number). ``to_mermaid`` and ``to_dot`` write that as text; a
renderer (GitHub for Mermaid, Graphviz's ``dot`` for SVG/PNG) draws it.

    api -->|ready| db          api waits until db is ready
    api -->|completed| migrate …, or until the job migrate has exited 0
    api -.- backend            api is on the network backend
    db --- data                db mounts the volume data (the edge names the target path)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from envkit.blueprint.model import Blueprint, Port, Service

__all__ = ["Edge", "Node", "Topology", "to_dot", "to_mermaid", "topology"]


@dataclass(frozen=True)
class Node:
    id: str  # unique, safe in both formats: s_<service>, n_<network>, v_<volume>
    kind: str  # a service's kind (service, job, stub, …), or network / volume
    name: str
    lines: tuple[str, ...] = ()  # further label lines: image, replicas, ports


@dataclass(frozen=True)
class Edge:
    source: str  # node ids
    target: str
    kind: str  # depends (source waits for target) | network | volume
    label: str = ""


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def _ids(prefix: str, names: Iterable[str], taken: set[str]) -> dict[str, str]:
    """Node ids of word characters only (``-`` would read as an arrow in Mermaid), unique even when
    two names differ only by ``-`` and ``_``."""
    out: dict[str, str] = {}
    for name in names:
        base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}_{n}"
        taken.add(ident)
        out[name] = ident
    return out


def _port(p: Port) -> str:
    host = str(p.host) if p.host else "ephemeral"
    suffix = "" if p.protocol == "tcp" else f"/{p.protocol}"
    return f"{p.container}{suffix} → {p.host_ip}:{host}"


def _image(svc: Service) -> str | None:
    if svc.kind == "stub" and svc.stub is not None:
        return f"{len(svc.stub.routes)} routes"
    if svc.build is not None:
        context = svc.build.context.name or str(svc.build.context)
        return f"build {context}" + (f" ({svc.build.dockerfile})" if svc.build.dockerfile != "Dockerfile" else "")
    if svc.image:
        return f"image {svc.image}"
    return None


def _service_lines(svc: Service) -> tuple[str, ...]:
    lines = []
    if svc.kind != "service":
        lines.append(str(svc.kind))
    image = _image(svc)
    if image:
        lines.append(image)
    if svc.replicas > 1:
        lines.append(f"{svc.replicas} replicas")
    lines += [_port(p) for p in svc.ports]
    return tuple(lines)


def _condition(dependency: Service, condition: str) -> str:
    """What a dependant waits for: ``ready`` on a job means it has completed (its ``usable`` milestone)."""
    return "completed" if dependency.kind == "job" and condition == "ready" else condition


def topology(bp: Blueprint, only: tuple[str, ...] = ()) -> Topology:
    """The nodes and edges of ``bp`` (with ``only``: those services and what they depend on)."""
    services = [bp.services[s] for s in (bp.closure(only) if only else bp.services)]
    networks = [n for n in bp.networks if any(n in s.network_names for s in services)]
    volumes = [v for v in bp.volumes if any(m.type == "volume" and m.source == v for s in services for m in s.volumes)]
    taken: set[str] = set()
    sid = _ids("s", (s.name for s in services), taken)
    nid = _ids("n", networks, taken)
    vid = _ids("v", volumes, taken)
    nodes = [Node(sid[s.name], str(s.kind), s.name, _service_lines(s)) for s in services]
    nodes += [Node(nid[n], "network", n, ("internal network",) if bp.networks[n].internal else ("network",))
              for n in networks]
    nodes += [Node(vid[v], "volume", v, ("volume",)) for v in volumes]
    edges = [Edge(sid[s.name], sid[d.service], "depends", _condition(bp.services[d.service], d.condition))
             for s in services for d in s.depends_on]
    edges += [Edge(sid[s.name], nid[a.network], "network", ", ".join(a.aliases))
              for s in services for a in s.networks if a.network in nid]
    edges += [Edge(sid[s.name], vid[m.source], "volume", m.target + (" (ro)" if m.read_only else ""))
              for s in services for m in s.volumes if m.type == "volume" and m.source in vid]
    return Topology(bp.name, tuple(nodes), tuple(edges))


# -- Mermaid ---------------------------------------------------------------------------------------------
#: node shape by kind: (open, close); anything else (a kind added later) gets the generic subroutine box
_MERMAID_SHAPES = {"service": ("(", ")"), "job": ("[/", "/]"), "stub": ("{{", "}}"), "network": ("([", "])"),
                   "volume": ("[(", ")]")}
_MERMAID_STYLES = {
    "service": "fill:#e8f1fb,stroke:#3572b0,color:#0b2540",
    "job": "fill:#fdf1dc,stroke:#b7791f,color:#3d2a06",
    "stub": "fill:#f0e8fb,stroke:#7a4db0,color:#2a1140",
    "other": "fill:#eeeeee,stroke:#666666,color:#222222",
    "network": "fill:#e9f7ec,stroke:#2f855a,color:#123d24",
    "volume": "fill:#f5f5f5,stroke:#718096,color:#1a202c",
}


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: its own entity codes for what would end or break the label."""
    return "".join({'"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;", "|": "#124;"}.get(c, c) for c in text)


def to_mermaid(t: Topology) -> str:
    """A Mermaid flowchart (GitHub renders a ```mermaid block in Markdown)."""
    out = ["flowchart LR", f"  %% envkit blueprint '{_mermaid_text(t.name)}'"]
    for n in t.nodes:
        opening, closing = _MERMAID_SHAPES.get(n.kind, ("[[", "]]"))
        label = "<br/>".join([f"<b>{_mermaid_text(n.name)}</b>", *(_mermaid_text(x) for x in n.lines)])
        out.append(f'  {n.id}{opening}"{label}"{closing}')
    for e in t.edges:
        arrow = {"depends": "-->", "network": "-.-", "volume": "---"}[e.kind]
        out.append(f"  {e.source} {arrow}{f'|{_mermaid_text(e.label)}|' if e.label else ''} {e.target}")
    used = {n.kind if n.kind in _MERMAID_STYLES else "other" for n in t.nodes}
    for kind, style in _MERMAID_STYLES.items():
        if kind in used:
            out.append(f"  classDef {kind} {style}")
    for kind in _MERMAID_STYLES:
        members = [n.id for n in t.nodes if (n.kind if n.kind in _MERMAID_STYLES else "other") == kind]
        if members:
            out.append(f"  class {','.join(members)} {kind}")
    return "\n".join(out) + "\n"


# -- Graphviz DOT ----------------------------------------------------------------------------------------
_DOT_SHAPES = {
    "service": 'shape=box, style="rounded,filled", fillcolor="#e8f1fb", color="#3572b0"',
    "job": 'shape=parallelogram, style=filled, fillcolor="#fdf1dc", color="#b7791f"',
    "stub": 'shape=hexagon, style=filled, fillcolor="#f0e8fb", color="#7a4db0"',
    "network": 'shape=ellipse, style=filled, fillcolor="#e9f7ec", color="#2f855a"',
    "volume": 'shape=cylinder, style=filled, fillcolor="#f5f5f5", color="#718096"',
}
_DOT_OTHER = 'shape=box3d, style=filled, fillcolor="#eeeeee", color="#666666"'
_DOT_EDGES = {"depends": 'color="#3572b0"', "network": 'style=dashed, dir=none, color="#2f855a"',
              "volume": 'dir=none, color="#718096"'}


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(t: Topology) -> str:
    """A Graphviz digraph (``dot -Tsvg`` draws it)."""
    out = [f"digraph {_dot_string(t.name)} {{", "  rankdir=LR;", '  graph [fontname="Helvetica", nodesep=0.35];',
           '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=9];']
    for n in t.nodes:
        label = _dot_string("\n".join([n.name, *n.lines]))
        out.append(f"  {n.id} [label={label}, {_DOT_SHAPES.get(n.kind, _DOT_OTHER)}];")
    for e in t.edges:
        label = f", label={_dot_string(e.label)}" if e.label else ""
        out.append(f"  {e.source} -> {e.target} [{_DOT_EDGES[e.kind]}{label}];")
    out.append("}")
    return "\n".join(out) + "\n"
