"""``placement:`` of a service: where a distributed engine may run its replicas (docs/swarm.md).

    placement:
      constraints: ["node.labels.zone==a", "node.role!=manager"]   # every one must hold
      max_per_node: 1                                               # replicas of this service per node
      preferences: [{spread: node.labels.rack}]                     # replicas spread over its values

The table is in ``TABLES`` (keys.py) like every other mapping; the value is a ``backends.types.Placement``
handed to the engine unchanged (``container="placement"``). One Docker engine is one node: there every
constraint is moot and the key has no effect (``envkit validate`` says so for that engine).
"""

from __future__ import annotations

import re
from typing import Any

from envkit.backends.types import Placement
from envkit.blueprint.readers import KeyDef, Reader, Table, read_keys, show
from envkit.blueprint.source import Key

__all__ = ["CONSTRAINT", "PLACEMENT", "SPREAD", "placement"]

#: what Swarm places by (docker service create --constraint): a node attribute, == or !=, a value
CONSTRAINT = re.compile(r"^\s*(node\.(?:id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)"
                        r"|engine\.labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*([^\s=!]+)\s*$")
#: what Swarm spreads by (docker service create --placement-pref spread=...): a node or engine label
SPREAD = re.compile(r"^\s*((?:node|engine)\.labels\.[A-Za-z0-9_./-]+)\s*$")
_ATTRIBUTES = "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.KEY, engine.labels.KEY"


def _constraint(r: Reader, value: Any, path: Key) -> str | None:
    text = r.string(value, path, "a constraint like node.labels.zone==a")
    if text is None:
        return None
    match = CONSTRAINT.match(text)
    if match is None:
        r.error(path, f"{show(text)} is not a placement constraint (ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE; "
                      f"attributes: {_ATTRIBUTES})")
        return None
    attribute, op, wanted = match.groups()
    if attribute == "node.role" and wanted not in ("manager", "worker"):
        r.error(path, f"node.role is manager or worker, got {show(wanted)}")
        return None
    return f"{attribute}{op}{wanted}"


def _constraints(r: Reader, value: Any, path: Key) -> tuple[str, ...]:
    if isinstance(value, str):  # one constraint written without a list
        found = _constraint(r, value, path)
        return (found,) if found else ()
    return tuple(r.items(value, path, "constraints", lambda x, q: _constraint(r, x, q)))


_PREFERENCE = {"type": "object", "properties": {"spread": {"type": "string"}}, "required": ["spread"],
               "additionalProperties": False}


def _preference(r: Reader, value: Any, path: Key) -> str | None:
    spec = r.mapping(value, path, "a preference {spread: node.labels.KEY}")
    if spec is None:
        return None
    r.keys(spec, path, ("spread",))
    if "spread" not in spec:
        r.error(path, "a preference needs spread: node.labels.KEY (the only strategy Swarm has)")
        return None
    text = r.string(spec["spread"], (*path, "spread"), "a node label like node.labels.zone")
    if text is None:
        return None
    match = SPREAD.match(text)
    if match is None:
        r.error((*path, "spread"), f"{show(text)} is not a label to spread over (node.labels.KEY or engine.labels.KEY)")
        return None
    return match.group(1)


def _preferences(r: Reader, value: Any, path: Key) -> tuple[str, ...]:
    if isinstance(value, dict):  # one preference written without a list
        found = _preference(r, value, path)
        return (found,) if found else ()
    return tuple(r.items(value, path, "preferences", lambda x, q: _preference(r, x, q)))


def _max_per_node(r: Reader, value: Any, path: Key) -> int | None:
    return r.integer(value, path, 1, 64, "a replica count per node")


PLACEMENT = Table("placement", (
    KeyDef("constraints", _constraints, (), "string or list of `ATTRIBUTE==VALUE` / `ATTRIBUTE!=VALUE`", "none",
           "Nodes a replica may run on: every constraint must hold (`node.labels.KEY`, `node.role`, "
           "`node.hostname`, `node.id`, `node.platform.os\\|arch`, `engine.labels.KEY`).",
           {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    KeyDef("max_per_node", _max_per_node, None, "integer 1..64", "no limit",
           "At most this many of the service's replicas on one node.", {"type": ["integer", "string"]}),
    KeyDef("preferences", _preferences, (), "list of `{spread: node.labels.KEY}`", "none",
           "Spread the replicas evenly over the values of a node label (`node.labels.KEY`, "
           "`engine.labels.KEY`; nodes without it count as one more value); several: in order, each within "
           "the last one's choice. A preference, never a constraint.",
           {"anyOf": [_PREFERENCE, {"type": "array", "items": _PREFERENCE}]}),
), extensions=False)


def placement(r: Reader, value: Any, path: Key) -> Placement | None:
    spec = r.mapping(value, path, "a mapping {constraints, max_per_node, preferences}")
    if spec is None:
        return None
    r.keys(spec, path, PLACEMENT)
    values = read_keys(r, PLACEMENT, spec, path)
    if not values["constraints"] and values["max_per_node"] is None and not values["preferences"]:
        return None
    return Placement(tuple(values["constraints"]), values["max_per_node"], tuple(dict.fromkeys(values["preferences"])))
