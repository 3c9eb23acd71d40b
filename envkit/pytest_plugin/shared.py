"""One environment for every worker of a pytest-xdist run (``--envkit-shared``), coordinated through a
locked JSON state file in ``<tmp>/envkit-shared-<testrunuid>/``::

    {"run": id | null, "done": [worker ids], "failed": bool, "kept": bool}

The first worker to need the environment brings it up while holding the lock; the others wait for the
lock and attach. Each worker adds itself to ``done`` at the end of its session; the last one (xdist's
worker count) removes the run, or keeps it when ``--envkit-keep`` and a test on any worker failed.
The controller, once every worker is gone, removes what a crashed worker left, and the folder.

Engine access is passed in (``up``, ``attach``, ``remove``), so the protocol is tested without one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envkit.api import Environment

__all__ = ["SharedRun", "shared_dir", "sweep"]

FILES = ("state.json", "state.tmp", "lock")


def shared_dir(testrunuid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"envkit-shared-{testrunuid}"


@dataclass
class SharedRun:
    """This worker's side of the shared environment."""

    folder: Path
    workers: int
    worker: str
    failed: bool = False  # a test on this worker failed

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "state.json"
        with FileLock(self.folder / "lock"):
            state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {
                "run": None, "done": [], "failed": False, "kept": False}
            yield state
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, path)

    def acquire(self, up: Callable[[], Environment], attach: Callable[[str], Environment]) -> Environment:
        with self._locked() as state:  # the others wait here while the first one brings it up
            if state["run"]:
                return attach(state["run"])
            env = up()
            env.detach()  # removed by the last worker, not when this one exits
            state["run"] = env.run_id
            return env

    def finish(self, keep: bool, remove: Callable[[str], None]) -> str:
        """This worker's session is over; the last one to get here removes the environment (idempotent).
        Returns what became of it, for the summary."""
        with self._locked() as state:
            state["done"] = sorted({*state["done"], self.worker})
            state["failed"] = state["failed"] or self.failed
            if state["kept"]:
                return "kept"
            if len(state["done"]) < self.workers or not state["run"]:
                return "left to the last worker" if state["run"] else "removed"
            if keep and state["failed"]:
                state["kept"] = True
                return "kept"
            remove(state["run"])
            state["run"] = None
            return f"removed by the last worker ({self.worker})"


def sweep(folder: Path, remove: Callable[[str], None]) -> str | None:
    """The controller's clean-up once every worker is gone: removes a run a crashed worker left (unless it
    is kept) and the folder. Returns the run id when it is kept, for the summary."""
    try:
        path = folder / "state.json"
        left = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if left.get("run") and left.get("kept"):
            return str(left["run"])
        if left.get("run"):
            remove(left["run"])
        return None
    finally:
        for name in FILES:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
