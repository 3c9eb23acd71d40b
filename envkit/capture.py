"""Capturing a service's seeded state into a snapshot (the ``snapshot:<service>`` step of a plan).

In order: the reset path is chosen (PostgreSQL template databases made while the server runs, when
asked for or detected); the service is stopped cleanly (its stop signal, then its grace period — so a
database's files are not torn); every volume it has mounted, named or anonymous, is copied into a data
volume of the snapshot; its filesystem is committed as the snapshot's image; the manifest is written
last; the service is started again and waited ready; the claim is released. A capture that fails
half-way leaves pieces without a manifest, which are never used and which the next capture of the same
key (or ``envkit snapshots prune``) removes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from envkit import labels as L
from envkit import snapshots as S
from envkit.backends.base import Backend, Capability, VolumeSpec
from envkit.blueprint.model import Probe
from envkit.errors import EngineError, ServiceFailed
from envkit.pgtemplate import Postgres, detect
from envkit.probes import log_tail, wait_ready

__all__ = ["CAPTURE_GRACE", "capture", "reset_path"]

#: how long a clean stop may take before the engine kills (a service's own stop_grace_period, if longer)
CAPTURE_GRACE = 30.0


def reset_path(backend: Backend, container: str, service: str, wanted: str,
               environment: Mapping[str, str]) -> tuple[str, Postgres | None]:
    """("template", how to reach the server) or ("restore", None), as ``snapshot.reset`` asks."""
    if wanted == "restore":
        return "restore", None
    pg = detect(backend, container, environment)
    if pg is None and wanted == "template":
        raise ServiceFailed(service, "snapshot.reset is 'template' but psql in the container cannot reach a "
                                     "PostgreSQL server as its superuser over the local socket "
                                     "(set POSTGRES_USER, or use reset: restore)", container=container)
    return ("template", pg) if pg is not None else ("restore", None)


def capture(backend: Backend, container_id: str, service: str, blueprint: str, key: str, *, reset: str,
            environment: Mapping[str, str], grace: float, probe: Probe | None, timeout: float,
            abort: threading.Event, claim: str = "") -> S.Snapshot:
    for capability in (Capability.EXPORT_FILESYSTEM, Capability.EXPORT_VOLUME, Capability.SIGNAL):
        backend.require(capability, f"services.{service}.snapshot")
    _, pg = reset_path(backend, container_id, service, reset, environment)
    databases: list[str] = []
    try:
        if pg is not None:
            databases = pg.make_templates(backend, container_id)
        state = backend.inspect_container(container_id)
        backend.stop_container(container_id, max(grace, CAPTURE_GRACE))
        stopped = backend.inspect_container(container_id)
        if stopped.exit_code == 128 + 9 or stopped.oom_killed:
            # Killed after the grace period (or out of memory): its files may be torn.
            raise ServiceFailed(service, f"did not stop cleanly for the snapshot (exit code {stopped.exit_code})",
                                log_tail(backend, container_id), state.name)
        mounts: list[tuple[str, str]] = []
        for i, m in enumerate(x for x in state.mounts if x.type == "volume"):
            data = S.data_name(key, i + 1)
            labels = {L.SNAPSHOT: key, L.ROLE: "snapshot-data", L.SNAPSHOT_TARGET: m.target, L.SERVICE: service}
            backend.create_volume(VolumeSpec(data, tuple(sorted(labels.items()))))
            backend.copy_volume(m.source, data)
            mounts.append((m.target, data))
        tag = S.image_tag(service, key)
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        snap = S.Snapshot(key, service, blueprint, tag, tuple(mounts),
                          "template:" + ",".join(databases) if pg is not None else "restore", created,
                          tuple(sorted(k for k in state.labels if k.startswith(L.NS + "."))),
                          f"{pg.superuser}:{pg.exec_user}" if pg is not None else "")
        backend.export_filesystem(container_id, tag, {L.SNAPSHOT: key, L.ROLE: "snapshot"})
        backend.create_volume(VolumeSpec(S.manifest_name(key), tuple(sorted(snap.labels().items()))))
    finally:
        try:
            backend.start_container(container_id)  # the run goes on with the service as it was
        except EngineError as exc:
            raise ServiceFailed(service, f"cannot start again after the snapshot: {exc}",
                                container=container_id) from exc
    wait_ready(backend, container_id, service, probe, timeout, abort)
    if claim:
        backend.remove_volume(claim)
    return snap


def postgres_of(snap: S.Snapshot) -> tuple[Postgres, list[str]] | None:
    """How to reach the server and which databases to reset (template path), else None."""
    if not snap.reset.startswith("template:"):
        return None
    user, _, exec_user = (snap.postgres or "postgres:").partition(":")
    return Postgres(user, exec_user), [d for d in snap.reset[len("template:"):].split(",") if d]
