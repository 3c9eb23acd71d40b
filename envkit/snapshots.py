"""Content-addressed snapshots of a service's seeded state: the key, the store on the engine, the claim.

A snapshot is kept on the engine, so that any process (any folder, any user of the engine) finds it:

- an **image**, ``envkit-snapshot/<service>:<key16>``: the container's filesystem, committed after a
  clean stop (``Backend.export_filesystem``);
- one **data volume** per volume the container had mounted, named or anonymous (those an image
  declares, as the official postgres image does), holding its content: ``envkit-snapshot-<key16>-<n>``;
- a **manifest** volume, ``envkit-snapshot-<key16>``, made last, whose labels describe the snapshot (the
  image, the mounts, the reset path). A snapshot without its manifest is incomplete and never used.

All three carry ``io.envkit.snapshot=<key>`` and no ``io.envkit.run``: no run's teardown touches them.
They go with ``envkit snapshots rm|prune`` (``remove``, ``prune`` here).

**The key** hashes everything that determines the seeded state, and nothing run- or machine-specific:
the image's engine id, the service's configuration (the model, without positions, host port bindings,
readiness probe, replica count or other keys that do not change what is stored; paths relative to the
blueprint's folder, each file named in it hashed by content), and the keys of the services it depends
on. The same inputs give the same key in any process, folder or machine; any changed input gives a new
key, so a stale snapshot is never used.

**The claim**: the first process to miss a key creates the volume ``envkit-snapshot-<key16>-claim``
carrying a random token. Volume creation is atomic on the engine and returns an existing volume as it
is, so exactly one token wins; the others wait for the winner's manifest. The claim carries the
winner's run labels: if that run fails or its owner dies, its teardown (rollback, the reaper) removes
the claim and a waiter takes over. A claim older than ``STALE_AFTER`` is taken over as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.backends.base import Backend, Resource, VolumeSpec
from envkit.blueprint.model import Blueprint, Service
from envkit.errors import Busy, Conflict, EngineError, EnvkitError

__all__ = [
    "SCHEMA",
    "Claim",
    "Snapshot",
    "Use",
    "acquire",
    "find",
    "image_tag",
    "list_snapshots",
    "prune",
    "release",
    "remove",
    "service_keys",
]

SCHEMA = "envkit.snapshot/2"  # raised when what a capture stores changes (2: templates keep database attributes)
STALE_AFTER = 1800.0  # seconds: a claim this old is abandoned (a capture is minutes at most)
#: service fields that do not change the state a service stores (kept out of the key)
_NOT_STATE = frozenset({"image", "build", "ports", "ready", "replicas", "stop_grace_period", "prestart",
                        "memory", "cpus", "depends_on", "ulimits", "init"})


# -- the key --------------------------------------------------------------------------------------------
def service_keys(bp: Blueprint, image_ids: Mapping[str, str], services: Iterable[str]) -> dict[str, str]:
    """The key of each named service (and of everything it depends on, which its key includes).
    ``image_ids``: service name → the engine's id of its image (``Backend.image_id``)."""
    keys: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in keys:
            svc = bp.services[name]
            document = {
                "schema": SCHEMA, "image": image_ids[name], "service": _config(bp, svc),
                "depends_on": {d.service: [d.condition, key(d.service)] for d in svc.depends_on},
            }
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            keys[name] = hashlib.sha256(text.encode()).hexdigest()
        return keys[name]

    for name in services:
        key(name)
    return keys


def _config(bp: Blueprint, svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(svc):
        value = getattr(svc, f.name)
        # A key at its default is left out, so that a key a later envkit adds (at its default) keeps
        # every existing snapshot's key as it was.
        if f.compare and f.name not in _NOT_STATE and not _default(f, value):
            out[f.name] = _plain(value, bp.directory)
    # Bind mounts: where from (relative to the blueprint) and what they hold, not the absolute path.
    out["volumes"] = [
        {**_plain(m, bp.directory), "source": _file(Path(m.source), bp.directory)} if m.type == "bind"
        else _plain(m, bp.directory) for m in svc.volumes
    ]
    out["ports"] = sorted(f"{p.container}/{p.protocol}" for p in svc.ports)  # what listens, not where published
    return out


def _default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


def _plain(value: Any, base: Path) -> Any:
    """Model values as JSON: dataclasses field by field (positions left out), paths by content."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # As in _config, defaults are left out; the type stays, so that two kinds of step (an exec and a
        # run of the same command) never give one document.
        return {"@type": type(value).__name__, **{f.name: _plain(getattr(value, f.name), base)
                                                 for f in dataclasses.fields(value)
                                                 if f.compare and not _default(f, getattr(value, f.name))}}
    if isinstance(value, Path):
        return _file(value, base)
    if isinstance(value, tuple | list):
        return [_plain(v, base) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, base) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _file(path: Path, base: Path) -> dict[str, str]:
    """A file or folder named in the blueprint: its path relative to the blueprint's folder (only its
    name when outside it) and a hash of its content (a folder's: every file's relative path, mode and bytes)."""
    full = path if path.is_absolute() else base / path
    shown = full.relative_to(base).as_posix() if full.is_relative_to(base) else full.name
    digest = hashlib.sha256()
    if full.is_dir():
        for item in sorted(p for p in full.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(full).as_posix()}\0{item.stat().st_mode & 0o111:o}\0".encode())
            digest.update(hashlib.sha256(item.read_bytes()).digest())
    elif full.is_file():
        digest.update(full.read_bytes())
    else:
        digest.update(b"\0missing")
    return {"path": shown, "sha256": digest.hexdigest()}


# -- names ----------------------------------------------------------------------------------------------
def image_tag(service: str, key: str) -> str:
    return f"envkit-snapshot/{service}:{key[:16]}"


def manifest_name(key: str) -> str:
    return f"envkit-snapshot-{key[:16]}"


def data_name(key: str, index: int) -> str:
    return f"{manifest_name(key)}-{index}"


def claim_name(key: str) -> str:
    return f"{manifest_name(key)}-claim"


# -- the store ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    key: str
    service: str
    blueprint: str
    image: str
    mounts: tuple[tuple[str, str], ...]  # (target path, data volume)
    reset: str  # "restore" | "template"
    created_at: str
    image_labels: tuple[str, ...] = ()  # io.envkit.* keys the committed image carries (see restore)
    postgres: str = ""  # template path: "<superuser>:<exec user>"

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Snapshot:
        try:
            mounts = tuple((str(m["target"]), str(m["volume"])) for m in json.loads(labels.get(L.SNAPSHOT_MOUNTS, "[]")))
            carried = tuple(str(k) for k in json.loads(labels.get(L.SNAPSHOT_LABELS, "[]")))
        except (ValueError, TypeError, KeyError) as exc:
            raise EngineError(f"snapshot {labels.get(L.SNAPSHOT, '?')[:16]}: unreadable manifest ({exc})") from exc
        return cls(labels[L.SNAPSHOT], labels.get(L.SERVICE, "?"), labels.get(L.BLUEPRINT, "?"),
                   labels.get(L.SNAPSHOT_IMAGE, ""), mounts, labels.get(L.SNAPSHOT_RESET, "restore"),
                   labels.get(L.CREATED_AT, ""), carried, labels.get(L.SNAPSHOT_PG, ""))

    def labels(self) -> dict[str, str]:
        return {
            L.SNAPSHOT: self.key, L.ROLE: "snapshot", L.SERVICE: self.service, L.BLUEPRINT: self.blueprint,
            L.SNAPSHOT_IMAGE: self.image, L.SNAPSHOT_RESET: self.reset, L.CREATED_AT: self.created_at,
            L.SNAPSHOT_MOUNTS: json.dumps([{"target": t, "volume": v} for t, v in self.mounts], separators=(",", ":")),
            L.SNAPSHOT_LABELS: json.dumps(list(self.image_labels), separators=(",", ":")),
            **({L.SNAPSHOT_PG: self.postgres} if self.postgres else {}),
        }


@dataclass(frozen=True)
class Use:
    """What a run does with a service's snapshot (an input of the plan): start from ``snapshot``, or
    capture it (``snapshot`` None) under the claim volume ``claim``."""

    key: str
    snapshot: Snapshot | None = None
    claim: str = ""


def find(backend: Backend, key: str) -> Snapshot | None:
    """The complete snapshot of ``key``, or None (also when a piece of it has gone missing)."""
    for r in backend.list_resources({L.SNAPSHOT: key, L.ROLE: "snapshot"}):
        if r.kind != "volume" or not r.labels.get(L.SNAPSHOT_IMAGE):
            continue  # a container made from the committed image carries its labels: not a manifest
        snap = Snapshot.from_labels(r.labels)
        volumes = {v.name for v in backend.list_resources({L.SNAPSHOT: key, L.ROLE: "snapshot-data"})}
        if backend.image_id(snap.image) and all(v in volumes for _, v in snap.mounts):
            return snap
    return None


def list_snapshots(backend: Backend) -> list[Snapshot]:
    found = [Snapshot.from_labels(r.labels) for r in backend.list_resources({L.SNAPSHOT: None, L.ROLE: "snapshot"})
             if r.kind == "volume" and r.labels.get(L.SNAPSHOT_IMAGE)]
    return sorted(found, key=lambda s: (s.created_at, s.key))


def remove(backend: Backend, key: str) -> list[str]:
    """Remove every piece of the snapshot(s) whose key is or starts with ``key``; returns what was
    removed. An image a run's container still uses is a Conflict naming it (the volumes are kept then)."""
    pieces = [r for r in backend.list_resources({L.SNAPSHOT: None}) if r.labels[L.SNAPSHOT].startswith(key)
              and r.labels.get(L.ROLE) in ("snapshot", "snapshot-data")]
    committed = _committed(backend, key)
    removed: list[str] = []
    for full in sorted({r.labels[L.SNAPSHOT] for r in pieces} | set(committed)):
        mine = [r for r in pieces if r.labels[L.SNAPSHOT] == full]
        service = next((r.labels.get(L.SERVICE, "") for r in mine if r.labels.get(L.ROLE) == "snapshot"), "")
        tags = {r.labels[L.SNAPSHOT_IMAGE] for r in mine if r.labels.get(L.SNAPSHOT_IMAGE)} | committed.get(full, set())
        if service:
            tags.add(image_tag(service, full))
        for tag in sorted(tags):
            try:
                backend.remove_image(tag)
            except Conflict as exc:
                raise Conflict(f"snapshot {full[:16]} is in use by a run ({exc}); remove the run first") from exc
            removed.append(f"image {tag}")
        for r in sorted(mine, key=lambda r: r.labels.get(L.ROLE) == "snapshot"):  # the manifest last
            _remove_resource(backend, r)
            removed.append(f"{r.kind} {r.name}")
    return removed


def _committed(backend: Backend, key: str) -> dict[str, set[str]]:
    """The committed images of the keys that are or start with ``key``: full key -> tags. A capture that
    died between the commit and the manifest leaves its image alone (no data volume either, when the
    service mounts none), which only its own labels name."""
    found: dict[str, set[str]] = {}
    for image in backend.list_images({L.SNAPSHOT: None, L.ROLE: "snapshot"}):
        full = image.labels.get(L.SNAPSHOT, "")
        tags = {t for t in image.tags if full and t.endswith(f":{full[:16]}") and t.startswith("envkit-snapshot/")}
        if full.startswith(key) and tags:
            found.setdefault(full, set()).update(tags)
    return found


def _remove_resource(backend: Backend, r: Resource) -> None:
    if r.kind == "container":
        backend.remove_container(r.id, 0)
    elif r.kind == "volume":
        backend.remove_volume(r.name)


def prune(backend: Backend, older_than: float | None = None, now: float | None = None,
          keys: Collection[str] | None = None) -> list[str]:
    """Remove every snapshot (created more than ``older_than`` seconds ago, when given), the pieces of
    captures that never finished, and abandoned claims; ``keys``: only those snapshots. Nothing else:
    runs are left alone."""
    now = time.time() if now is None else now
    removed: list[str] = []
    complete = {s.key: s for s in list_snapshots(backend)}
    pieces = [r for r in backend.list_resources({L.SNAPSHOT: None})
              if keys is None or r.labels[L.SNAPSHOT] in keys]
    live_claims = {r.labels[L.SNAPSHOT] for r in pieces if r.labels.get(L.ROLE) == "snapshot-claim"
                   and not _stale(r.labels, now)}
    committed = [k for k in _committed(backend, "") if keys is None or k in keys]
    for key in sorted({r.labels[L.SNAPSHOT] for r in pieces if r.labels.get(L.ROLE) != "snapshot-claim"}
                      | set(committed)):
        snap = complete.get(key)
        if snap is None:  # an unfinished capture: its pieces, unless a capture is under way
            if key not in live_claims:
                removed += remove(backend, key)
        elif older_than is None or now - _epoch(snap.created_at) > older_than:
            removed += remove(backend, key)
    for r in pieces:
        if r.labels.get(L.ROLE) == "snapshot-claim" and _stale(r.labels, now):
            _remove_resource(backend, r)
            removed.append(f"{r.kind} {r.name}")
    return removed


def _epoch(stamp: str) -> float:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


# -- the claim ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """This process captures ``key``: it made the claim volume, which ``release`` removes."""

    key: str
    volume: str
    token: str


def _stale(labels: Mapping[str, str], now: float) -> bool:
    if now - _epoch(labels.get(L.CREATED_AT, "")) > STALE_AFTER:
        return True
    owner = labels.get(L.OWNER, "")  # user@host:pid — a dead process on this host holds nothing
    host, _, pid = owner.rpartition("@")[2].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def acquire(backend: Backend, key: str, run_labels: Mapping[str, str], deadline: float,
            waiting: Callable[[str], None] = lambda owner: None) -> Snapshot | Claim:
    """The snapshot of ``key`` when one exists (waiting while another process captures it), or the
    claim to capture it. ``run_labels``: the claiming run's labels (managed, run, owner, created-at),
    so that its teardown removes the claim. ``waiting(owner)`` is called once when this waits."""
    told = False
    token = secrets.token_hex(8)
    while True:
        snap = find(backend, key)
        if snap is not None:
            return snap
        name = claim_name(key)
        labels = {**run_labels, L.SNAPSHOT: key, L.ROLE: "snapshot-claim", L.CLAIM: token}
        backend.create_volume(VolumeSpec(name, tuple(sorted(labels.items()))))
        holders = [r for r in backend.list_resources({L.SNAPSHOT: key, L.ROLE: "snapshot-claim"}) if r.name == name]
        if holders and holders[0].labels.get(L.CLAIM) == token:
            snap = find(backend, key)  # finished between the look-up and the claim
            if snap is not None:
                backend.remove_volume(name)
                return snap
            _clear_leftovers(backend, key)
            return Claim(key, name, token)
        if holders and _stale(holders[0].labels, time.time()):
            backend.remove_volume(name)  # abandoned: take over
            continue
        if time.monotonic() > deadline:
            owner = holders[0].labels.get(L.OWNER, "?") if holders else "?"
            raise Busy(f"snapshot {key[:16]} is still being captured by {owner}; gave up waiting")
        if not told and holders:
            waiting(holders[0].labels.get(L.OWNER, "?"))
            told = True
        time.sleep(0.25)


def _clear_leftovers(backend: Backend, key: str) -> None:
    """Pieces of an earlier capture of ``key`` that never finished (its process died half-way)."""
    with contextlib.suppress(EnvkitError):  # in use or gone meanwhile: the capture replaces what it can
        remove(backend, key)


def release(backend: Backend, claim: Claim) -> None:
    backend.remove_volume(claim.volume)
