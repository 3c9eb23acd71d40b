"""The label namespace and the names envkit gives to engine resources.

Discovery (down, ls, status, attach) uses labels only; names are for humans reading ``docker ps``:
``envkit-<run>-<service>-<n>`` for containers, ``envkit-<run>-<network>`` for networks and
``envkit-<run>-<volume>`` for volumes. One value per label.
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "NS",
    "container_name",
    "network_name",
    "new_run_id",
    "valid_run_id",
    "volume_name",
]

NS = "io.envkit"
MANAGED = f"{NS}.managed"
RUN = f"{NS}.run"
BLUEPRINT = f"{NS}.blueprint"
BLUEPRINT_PATH = f"{NS}.blueprint-path"
SERVICE = f"{NS}.service"
REPLICA = f"{NS}.replica"
ROLE = f"{NS}.role"  # service | seed | fault | reaper | claim (envkit.claim: a volume, while `up` runs)
KIND = f"{NS}.kind"  # service | job
OWNER = f"{NS}.owner"
CREATED_AT = f"{NS}.created-at"
VERSION = f"{NS}.version"
NETWORK = f"{NS}.network"
VOLUME = f"{NS}.volume"
PROBE = f"{NS}.probe"
STOP_GRACE = f"{NS}.stop-grace"
OUTPUT_PREFIX = f"{NS}.output."
CONTEXT_HASH = f"{NS}.context-hash"

_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def new_run_id(blueprint_name: str) -> str:
    """A readable unique id, e.g. ``shop-7f3a9c``: 24 random bits, plenty for the runs one engine holds."""
    return f"{blueprint_name}-{secrets.token_hex(3)}"


def valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id))


def container_name(run_id: str, service: str, replica: int) -> str:
    return f"envkit-{run_id}-{service}-{replica}"


def network_name(run_id: str, network: str) -> str:
    return f"envkit-{run_id}-{network}"


def volume_name(run_id: str, volume: str) -> str:
    return f"envkit-{run_id}-{volume}"
