"""What a Docker Compose key is called in a blueprint, or why envkit has none: shown instead of a
"did you mean" guess when a Compose key turns up where the blueprint format has no such key.

Keyed by the key tables' titles (``keys.TABLES``), next to which this table lives. A hint completes
"unknown key 'restart' (a Compose key; ...)". ``markdown()`` renders them for
docs/coming-from-compose.md (a unit test keeps that page equal to it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HINTS", "hint", "looks_like_compose", "markdown"]

_PER_RUN = "not supported: a run is a throwaway environment"

SERVICE: dict[str, str] = {
    "restart": f"{_PER_RUN}; a service that exits fails the run (see `envkit logs RUN SERVICE`). "
               "For a one-off task use kind: job",
    "healthcheck": "use ready: healthcheck (the image's HEALTHCHECK) or ready: {tcp|http|exec|log: ...}; "
                   "disable: true is ready: {healthcheck: false}",
    "env_file": "not supported in the file: set environment: per service; variables for ${VAR} come from "
                "`--env-file FILE` and the .env beside the blueprint",
    "profiles": "not supported: choose services with `envkit up --only SVC` (with what they depend on)",
    "container_name": "not supported: names are envkit-<run>-<service>-<n> so that runs never collide; "
                      "other services reach it by its service name",
    "deploy": "use replicas:, memory: and cpus: on the service",
    "scale": "use replicas:",
    "mem_limit": "use memory:",
    "cpu_count": "use cpus:",
    "expose": "not needed: every port is reachable from the run's networks; use ports: to publish one on "
              "this machine",
    "links": "not needed: services reach each other by service name on their shared networks",
    "external_links": "not supported: a run reaches only its own services",
    "extra_hosts": "not supported: services reach each other by service name",
    "volumes_from": "not supported: declare a named volume under volumes: and mount it in both services",
    "network_mode": "not supported: a service joins the run's private networks (networks:)",
    "pull_policy": "not needed: an image: missing on the engine is pulled, a build: is rebuilt when its "
                   "content changes",
    "platform": "not supported: images run on the engine's own platform",
    "secrets": "not supported: pass values through environment: (with ${VAR} from --env-file or .env)",
    "configs": "not supported: mount files with volumes: (type: bind, read_only: true)",
    "logging": "not supported: envkit reads the engine's logs (`envkit logs RUN`)",
    "devices": "not supported: a run uses no host devices",
    "security_opt": "not supported",
    "sysctls": "not supported",
    "shm_size": "not supported: mount a tmpfs: at /dev/shm",
    "dns": "not supported: the run's networks resolve service names",
    "stdin_open": "not supported: use `envkit exec -i RUN SERVICE -- CMD`",
    "tty": "not supported: use `envkit exec -t RUN SERVICE -- CMD`",
    "domainname": "not supported: use hostname:",
    "ipc": "not supported",
    "pid": "not supported",
    "userns_mode": "not supported",
    "extends": "not supported: share settings with YAML anchors and merge keys (<<: *common)",
}

TOP: dict[str, str] = {
    "configs": "not supported: mount files with volumes: (type: bind, read_only: true)",
    "include": "not supported: one blueprint file holds the whole topology",
    "profiles": "not supported at the top: choose services with `envkit up --only SVC`",
}

NETWORK: dict[str, str] = {
    "driver": "not needed: the engine chooses the driver (a bridge on one Docker engine)",
    "external": "not supported: a run uses only networks it creates",
    "ipam": "not supported: the engine assigns addresses",
}

VOLUME: dict[str, str] = {
    "driver": "not supported: volumes use the engine's default driver",
    "external": "not supported: a run uses only volumes it creates; mount a host folder with type: bind",
}

BUILD: dict[str, str] = {
    "cache_from": "not supported: images are tagged by content and reused",
    "platforms": "not supported: images are built for the engine's platform",
    "ssh": "not supported",
    "secrets": "not supported",
}

PROBE: dict[str, str] = {
    "test": "a Compose healthcheck key: use exec: [CMD, ...] (or healthcheck: true for the image's own)",
    "interval": "not needed: probes start fast and back off",
    "retries": "not needed: a probe is retried until timeout:",
    "start_period": "use timeout: (the whole wait)",
}

#: table title (``keys.TABLES``) -> Compose key -> what to use instead
HINTS: dict[str, dict[str, str]] = {
    "service": SERVICE, "blueprint": TOP, "network": NETWORK, "volume": VOLUME, "build": BUILD, "probe": PROBE,
}


def hint(table: str, key: str) -> str | None:
    """What a blueprint uses instead of Compose's ``key`` in the mapping of ``table``, if it is one."""
    return HINTS.get(table, {}).get(key)


def looks_like_compose(data: Any) -> bool:
    """Whether ``data`` (a file that does not load as a blueprint) is written in Compose's terms: two or more
    of Compose's keys (in a service or at the top) or a ``service_*`` condition in a ``depends_on``. One
    stray key in a blueprint is told by its own problem's hint."""
    if not isinstance(data, dict):
        return False
    found = {f"top.{key}" for key in data if key in TOP or (key == "secrets" and isinstance(data[key], dict))}
    services = data.get("services")
    for spec in services.values() if isinstance(services, dict) else ():
        if not isinstance(spec, dict):
            continue
        found |= {key for key in spec if key in SERVICE}
        depends = spec.get("depends_on")
        if isinstance(depends, dict):
            found |= {"condition" for o in depends.values()
                      if isinstance(o, dict) and str(o.get("condition", "")).startswith("service_")}
    return len(found) >= 2 or "condition" in found


_WHERE = {"service": "a service", "blueprint": "the top level", "network": "a network", "volume": "a volume",
          "build": "`build:`", "probe": "`ready:`"}


def markdown() -> str:
    """The hints as Markdown tables, one per mapping, keys sorted."""
    parts = []
    for table, hints in HINTS.items():
        rows = "\n".join("| `" + key + "` | " + text.replace("|", "\\|") + " |" for key, text in sorted(hints.items()))
        parts.append(f"### In {_WHERE[table]}\n\n| Compose key | In a blueprint |\n|---|---|\n{rows}\n")
    return "\n".join(parts)
