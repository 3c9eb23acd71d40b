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
ROLE = f"{NS}.role"  # service | seed | fault | reaper | helper | snapshot | snapshot-data | snapshot-claim | claim | cow | holder
KIND = f"{NS}.kind"  # service | job
OWNER = f"{NS}.owner"
CREATED_AT = f"{NS}.created-at"
EXPIRES_AT = f"{NS}.expires-at"  # same format as created-at (UTC, seconds); absent: no expiry (envkit/gc.py)
LIFETIME = f"{NS}.lifetime"  # owner: ends with its owner process | detached: until down or expiry (envkit/gc.py)
VERSION = f"{NS}.version"
NETWORK = f"{NS}.network"
VOLUME = f"{NS}.volume"
PROBE = f"{NS}.probe"
IMAGE = f"{NS}.image"  # the image a container was made from (a build's content tag): `envkit rebuild` compares it
DEPENDS_ON = f"{NS}.depends-on"  # JSON {"service": "started|ready|completed"}: restart order without the blueprint
STOP_GRACE = f"{NS}.stop-grace"
OUTPUT_PREFIX = f"{NS}.output."
SECRET_OUTPUT_PREFIX = f"{NS}.secret-output."  # + an output marked `secret: true`: "true" (shown masked whole)
SECRET_PREFIX = f"{NS}.secret."  # + a secret's name: where its value is (SERVICE/KEY[/START:END]), never the value
CONTEXT_HASH = f"{NS}.context-hash"
TLS_CA = f"{NS}.tls-ca"  # a TLS stub's container: the PEM of the run's CA certificate (public; its key is nowhere)
# Snapshots (envkit/snapshots.py): no io.envkit.run on what a snapshot keeps, so no run teardown touches it.
SNAPSHOT = f"{NS}.snapshot"  # the snapshot's key (64 hex), on its manifest, data volumes and claim
SNAPSHOT_IMAGE = f"{NS}.snapshot-image"  # manifest: the image holding the committed filesystem
SNAPSHOT_MOUNTS = f"{NS}.snapshot-mounts"  # manifest: JSON [{target, volume}] of the captured volumes
SNAPSHOT_RESET = f"{NS}.snapshot-reset"  # manifest: "restore", or "template" (PostgreSQL template databases)
SNAPSHOT_LABELS = f"{NS}.snapshot-labels"  # manifest: JSON list of the io.envkit.* keys the image carries
SNAPSHOT_PG = f"{NS}.snapshot-pg"  # manifest, template path: "<superuser>:<exec user>" to reach the server
RESEED = f"{NS}.reseed"  # a service with a snapshot: "api,fixtures", the dependants whose seeds a reset runs again
SNAPSHOT_TARGET = f"{NS}.snapshot-target"  # data volume: the path it was mounted at
CLAIM = f"{NS}.claim"  # claim volume: the token of the process capturing the snapshot

_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")


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
