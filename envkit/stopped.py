"""What happened to a service whose container is no longer running, said by service name.

Used wherever a dead service would otherwise surface as a puzzle: a port it "does not publish" (it
did; it exited), an exec refused for a container id, a status that looks fine. One wording everywhere:

    service api: exited with code 1 at 12:03:04 UTC; its ports are gone; see `envkit logs RUN api`
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from envkit.backends.base import ContainerState
from envkit.errors import ServiceFailed

__all__ = ["reason", "stopped_error"]


def _when(stamp: str | None) -> str:
    """RFC 3339 from the engine ("2024-05-01T12:03:04.123456789Z") as "12:03:04 UTC" today, else with the date."""
    if not stamp or stamp.startswith("0001-"):
        return ""
    try:
        moment = datetime.fromisoformat(stamp[:19]).replace(tzinfo=UTC)
    except ValueError:
        return ""
    today = datetime.now(UTC).date() == moment.date()
    return f" at {moment:%H:%M:%S} UTC" if today else f" at {moment:%Y-%m-%d %H:%M:%S} UTC"


def reason(c: ContainerState) -> str | None:
    """Why the container is not running ("exited with code 1 at 12:03:04 UTC"); None if it runs."""
    if c.status in ("running", "paused"):
        return None
    if c.lost:  # a distributed engine's node went down with it
        return c.lost
    if c.status == "created":
        return "was never started"
    if c.status in ("restarting", "removing"):
        return f"is {c.status}"
    if c.exit_code is None:
        return f"is {c.status}"
    why = f"exited with code {c.exit_code}{_when(c.finished_at)}"
    if c.oom_killed:
        why += " (killed: out of memory; raise its 'memory' limit)"
    elif c.exit_code >= 128 and c.exit_code - 128 in _SIGNALS:
        why += f" (killed by {_SIGNALS[c.exit_code - 128]})"
    return why


_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


def stopped_error(run_id: str, service: str, replicas: Sequence[ContainerState], consequence: str) -> ServiceFailed | None:
    """The error for using ``service`` when none of its ``replicas`` runs, or None if one does.
    ``consequence`` says what it means for the caller ("its ports are gone")."""
    stopped = [(i, why) for i, c in enumerate(replicas, 1) if (why := reason(c)) is not None]
    if not replicas or len(stopped) < len(replicas):
        return None
    i, why = stopped[0]
    head = why if len(replicas) == 1 else f"all {len(replicas)} replicas stopped (replica {i} {why})"
    return ServiceFailed(service, f"{head}; {consequence}; see `envkit logs {run_id} {service}`")
