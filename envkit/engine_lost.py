"""An ``up`` that lost its engine: the error the person gets (docs/lifecycle.md, "A lost engine connection").

A connection that drops in the middle of ``up`` (the daemon restarted, a proxy or SSH tunnel in front of
it died) fails whatever step was running — often a service's start, which is then no fault of the
service. So ``envkit.api.up`` names the engine instead, says whether what the run had made could be
removed, and, if not, who removes it once the engine is back: the owner's watchdog within its budget,
else ``envkit gc`` (the run's claim says its ``up`` never finished).
"""

from __future__ import annotations

from envkit.errors import EngineUnavailable, EnvkitError
from envkit.reaper import RETRY_FOR

__all__ = ["during_up"]


def _first(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def during_up(run_id: str, engine: str, lost: EnvkitError, left: EnvkitError | None, watched: bool) -> EngineUnavailable:
    """The error of an ``up`` of ``run_id`` whose engine went away (``lost``: what said so first). ``left``:
    why the rollback could not remove the run (None: it was removed). ``watched``: a watchdog has the run."""
    head = f"lost the connection to the {engine} engine while run {run_id} was coming up: {_first(lost)}"
    check = "check the engine (Docker: `docker info`)"
    if left is None:
        return EngineUnavailable(f"{head}\n  what run {run_id} had made was removed; {check} and try again")
    who = (f"its watchdog removes the run if that is within {RETRY_FOR:g} s, and after that `envkit gc` does"
           if watched else "`envkit gc` removes the run")
    return EngineUnavailable(f"{head}\n  run {run_id} is partly made and could not be removed ({_first(left)})\n"
                             f"  once the engine answers again, {who} (or `envkit down {run_id}`); {check}")
