"""One run name, one owner: the claim that makes ``up --name X`` twice at once end with one winner.

Checking "does a run named X exist?" and then creating is a race: two processes both see nothing.
Container names are unique on an engine, but network names are not (two concurrent creates of one
network name both succeed on Docker 20.10), and a run's networks come first, so both runs would get
half-made, and the winner's containers would no longer find "its" network by name.

So before anything else, ``up`` claims the name: it creates a volume named ``envkit--<run>`` (a name
no run's own volume can have: run ids start with a letter or digit) carrying its owner and creation
time. A volume create returns the existing volume as it is, atomically per name — this is in the
backend contract — so exactly one process sees its own labels on the claim. The winner then checks
that no other owner's resource carries the run's label (a run made before, or one whose claim was
already released), goes on, and removes the claim once the run is up: an idle run holds nothing
extra. The loser gets ``NameInUse`` before it has created anything, so the winner is untouched.

The claim carries the run's labels (role ``claim``), so a rollback, ``down``, the owner's watchdog
and ``gc`` remove it like the rest of the run.
"""

from __future__ import annotations

import contextlib
import secrets

from envkit import labels as L
from envkit.backends.base import Backend, VolumeSpec
from envkit.errors import EngineError, UsageError

__all__ = ["TOKEN", "NameInUse", "claim", "claim_name", "release"]

#: a label only the claim carries: one random value per ``up`` call, so that two calls of one process in
#: the same second (same owner, same creation time) are told apart too
TOKEN = f"{L.NS}.claim"


class NameInUse(UsageError):
    """Another process holds, or has made, a run of that name."""


def claim_name(run_id: str) -> str:
    return f"envkit--{run_id}"


def claim(backend: Backend, run_id: str, labels: dict[str, str]) -> str:
    """Claim ``run_id`` with the run's ``labels`` before anything of the run is created; returns the
    claim's name. Raises NameInUse naming the other owner."""
    name, token = claim_name(run_id), secrets.token_hex(8)
    backend.create_volume(VolumeSpec(name, tuple(sorted({**labels, L.RUN: run_id, L.ROLE: "claim",
                                                         TOKEN: token}.items()))))
    found = backend.list_resources({L.MANAGED: "true", L.RUN: run_id})
    held = next((r for r in found if r.kind == "volume" and r.name == name), None)
    if held is None or held.labels.get(TOKEN) != token:
        owner = held.labels.get(L.OWNER, "?") if held else "a process removing it"
        raise NameInUse(f"run name '{run_id}' is in use: another `up` of that name is under way (owner {owner}); "
                        f"choose another --name, or wait and `envkit down {run_id}`")
    other = next((r for r in found if r is not held), None)  # nothing of ours exists yet: it is another's
    if other is not None:
        release(backend, name)
        raise NameInUse(f"run name '{run_id}' is in use: {other.kind} {other.name} belongs to a run of that name "
                        f"(owner {other.labels.get(L.OWNER, '?')}); choose another --name or `envkit down {run_id}`")
    return name


def release(backend: Backend, name: str) -> None:
    """Drop the claim once the run is up (its containers' names now hold the run's place). A claim that
    cannot be removed now stays with the run and goes with its teardown."""
    with contextlib.suppress(EngineError):
        backend.remove_volume(name)
