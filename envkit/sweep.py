"""The sweep in passing: every CLI command that connects to the engine removes **expired** runs (anyone's),
cheaply — at most once per ``SWEEP_INTERVAL`` per user and engine (a stamp file under the user's cache
folder, taken under ``flock``), with one label-filtered listing, and the removal in a background process
(``python -m envkit.sweep``) so that the command is not held up. Owners are ``envkit gc``'s to judge
(``envkit.gc``), never the sweep's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from envkit import labels as L
from envkit.backends.base import Backend, Resource
from envkit.errors import EnvkitError
from envkit.gc import parse_stamp
from envkit.runs import teardown

__all__ = ["SWEEP_INTERVAL", "SWEEP_SWITCH", "sweep_in_passing"]

SWEEP_INTERVAL = 60.0  # seconds between two sweeps in passing (per user and engine)
SWEEP_SWITCH = "ENVKIT_SWEEP_INTERVAL"  # seconds, or "off"
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _cache_dir(environment: Mapping[str, str]) -> Path:
    base = environment.get("XDG_CACHE_HOME") or str(Path(environment.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "envkit"


def _interval(environment: Mapping[str, str]) -> float | None:
    text = environment.get(SWEEP_SWITCH, "").strip().lower()
    if not text:
        return SWEEP_INTERVAL
    if text in ("off", "no", "false", "never"):
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        return SWEEP_INTERVAL


def _engine_key(backend: Backend) -> str:
    name, env = backend.origin or (backend.name, {})
    where = "|".join((name, env.get("DOCKER_HOST", ""), env.get("DOCKER_CONTEXT", "")))
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def _claim(stamp: Path, interval: float, now: float) -> bool:
    """Whether this process sweeps now: the stamp is older than ``interval`` and no one else holds it."""
    stamp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(stamp, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another command is sweeping right now
        try:
            last = float(os.read(fd, 64).decode() or "nan")
        except ValueError:
            last = float("nan")
        if last == last and 0 <= now - last < interval:  # nan != nan: never swept
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{now:.3f}".encode())
        return True
    finally:
        os.close(fd)


def sweep_in_passing(backend: Backend, *, environment: Mapping[str, str] | None = None,
                     now: datetime | None = None) -> list[str]:
    """Remove expired runs (anyone's), cheaply: at most once per interval (``ENVKIT_SWEEP_INTERVAL``,
    default 60 s; ``off`` disables), one listing, and the removal in a background process when the
    engine can be reached from one (else here). ``now`` (default: the clock) judges expiry; the interval
    always goes by the clock. Never raises; returns the run ids being removed."""
    env = os.environ if environment is None else environment
    interval = _interval(env)
    now = now or datetime.now(UTC)
    try:
        if interval is None or not _claim(_cache_dir(env) / f"sweep-{_engine_key(backend)}", interval, time.time()):
            return []
        groups: dict[tuple[str, str, str], list[Resource]] = {}
        for r in backend.list_resources({L.MANAGED: "true", L.EXPIRES_AT: None}):
            until = parse_stamp(r.labels.get(L.EXPIRES_AT, ""))
            if until is not None and until <= now and L.RUN in r.labels:
                key = (r.labels[L.RUN], r.labels.get(L.OWNER, ""), r.labels.get(L.CREATED_AT, ""))
                groups.setdefault(key, []).append(r)
        if not groups:
            return []
        runs = {run: {k: v for k, v in ((L.OWNER, owner), (L.CREATED_AT, created)) if v}
                for run, owner, created in groups}
        if backend.origin is None:  # made by hand (the fake): no other process can reach it
            for run, guard in runs.items():
                teardown(backend, [run], missing_ok=True, also=guard)
        else:
            _spawn(backend.origin, runs)
        return sorted(runs)
    except (EnvkitError, OSError):
        return []


def _spawn(origin: tuple[str, Mapping[str, str]], runs: Mapping[str, Mapping[str, str]]) -> None:
    name, env = origin
    child_env = {**env, "ENVKIT_ENGINE": name, "ENVKIT_REAPER": "0",
                 "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "envkit.sweep", json.dumps(runs)], cwd="/", env=child_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    # A long-lived command reaps it when it ends; a short one leaves that to init.
    threading.Thread(target=proc.wait, name="envkit-sweep", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    """The background sweep: ``python -m envkit.sweep '{"run": {guard labels}}'``; bounded to 120 s."""
    import signal

    from envkit.reaper import engine_teardown

    signal.alarm(120)
    args = list(sys.argv[1:] if argv is None else argv)
    with contextlib.suppress(ValueError, IndexError):
        runs = {str(k): {str(a): str(b) for a, b in dict(v).items()} for k, v in json.loads(args[0]).items()}
        engine_teardown(runs, sweeps=(0.0,))


if __name__ == "__main__":
    main()
