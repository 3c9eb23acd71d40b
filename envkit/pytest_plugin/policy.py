"""What happens to an environment when its owner is done with it: the lifecycle policy.

    reuse  (--envkit-reuse)           left running: somebody else's run
    shared (--envkit-shared)          left to the last xdist worker (see shared.py)
    --envkit-keep and a test failed   kept for inspection (detached: not removed at exit either)
    otherwise                         removed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from envkit.signals import despite_interrupts

if TYPE_CHECKING:
    from envkit.api import Environment
    from envkit.pytest_plugin.pool import Entry

__all__ = ["MAY_BE_LEFT", "Action", "apply", "decide", "remove"]

Action = Literal["nothing", "detach", "down"]
MAY_BE_LEFT = "may be left"


def decide(entry: Entry, keep: bool) -> tuple[Action, str]:
    """The action on release, and the outcome it gives when it succeeds."""
    if entry.how == "reuse":
        return "nothing", "left running"
    if entry.how == "shared":
        return "nothing", "left to the last worker"
    if keep and entry.failed:
        return "detach", "kept"
    return "down", "removed"


def remove(env: Environment) -> bool:
    """Tear the run down; a second Ctrl-C starts the teardown again instead of leaving half a run.
    False when every attempt was interrupted: the run may be left."""
    finished, _ = despite_interrupts(env.down)
    return finished


def apply(entry: Entry, keep: bool) -> str | None:
    """Release ``entry`` by the policy; sets its outcome. Returns a problem line when the run may be left."""
    action, outcome = decide(entry, keep)
    if action == "detach":
        entry.env.detach()
    elif action == "down" and not remove(entry.env):
        entry.outcome = MAY_BE_LEFT
        return f"run {entry.env.run_id} may be left (teardown interrupted); remove it with: envkit down {entry.env.run_id}"
    entry.outcome = outcome
    return None
