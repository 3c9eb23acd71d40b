"""A run's logs, interleaved by time across its services, as ``docker compose logs`` shows them.

Every line comes with the time the engine received it (``Backend.log_lines``), so the lines of all the
containers of a run are merged into one stream in the order they were printed; each line names its
source: the service, or ``service-2`` for a replica of a service that has several. ``--since`` takes a
duration back from now (``10m``, ``1h30m``, ``90s``) or a time (RFC 3339, a date, a UNIX time), as
``docker logs`` does.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime

from envkit import labels as L
from envkit.backends.base import Backend, ContainerState, LogLine
from envkit.blueprint.readers import parse_duration
from envkit.errors import EnvkitError, UsageError
from envkit.runs import RunInfo

__all__ = ["Entry", "follow", "merged", "parse_since", "sources"]


@dataclass(frozen=True)
class Entry:
    at: datetime
    source: str  # "api", or "web-2" for a replica of a service that has several
    text: str

    def line(self, prefix: bool = True, timestamps: bool = False, width: int = 0) -> str:
        stamp = f"{self.at.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z " if timestamps else ""
        return f"{self.source:<{width}} | {stamp}{self.text}" if prefix else f"{stamp}{self.text}"


def parse_since(text: str, now: float | None = None) -> float:
    """A UNIX time from ``10m`` (that long ago), ``2024-05-01T12:00:00Z``, ``2024-05-01`` (local
    midnight), ``2024-05-01T12:00`` (local time) or ``1714560000`` (a UNIX time)."""
    value = text.strip()
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    ago = parse_duration(value)
    if ago is not None:
        return now - ago
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (10m, 1h30m, 90s) or a time "
                         "(2024-05-01T12:00:00Z, 2024-05-01, a UNIX time)") from None
    return when.timestamp()  # without a zone: this machine's local time, as docker logs reads it


def sources(info: RunInfo, services: Sequence[str] = ()) -> list[tuple[str, ContainerState]]:
    """(source name, container) of the named services (every one when none is named), in run order."""
    unknown = [s for s in services if s not in info.services]
    if unknown:
        raise UsageError(f"run {info.run_id} has no service {', '.join(unknown)} "
                         f"(services: {', '.join(info.services)})")
    out = []
    for service in services or tuple(info.services):
        replicas = info.replicas(service)
        for c in replicas:
            out.append((f"{service}-{c.labels.get(L.REPLICA, '?')}" if len(replicas) > 1 else service, c))
    return out


def merged(backend: Backend, info: RunInfo, services: Sequence[str] = (), tail: int | None = None,
           since: float | None = None, until: float | None = None) -> list[Entry]:
    """Every line of the selected containers, oldest first; ``tail``: the last N of each container."""
    entries: list[Entry] = []
    for source, c in sources(info, services):
        entries += [Entry(line.at, source, line.text) for line in backend.log_lines(c.id, tail, since, until)]
    return sorted(entries, key=lambda e: e.at)  # stable: one container's lines keep their order


def follow(backend: Backend, info: RunInfo, services: Sequence[str] = (), tail: int | None = None,
           since: float | None = None) -> Generator[Entry, None, None]:
    """The lines so far (as ``merged``), then each new line as it comes, from every selected container,
    until each of them has stopped (or the caller closes the iterator). An engine error while following
    ends the stream with that error."""
    began = time.time()  # a container with nothing to show yet is followed from here
    history = merged(backend, info, services, tail, since)
    yield from history
    last: dict[str, datetime] = {}
    for e in history:
        last[e.source] = e.at
    lines: queue.Queue[tuple[str, LogLine | EnvkitError | None]] = queue.Queue()
    stop = threading.Event()

    def pump(source: str, c: ContainerState) -> None:
        seen = last.get(source)
        try:
            # From the last line shown on (the engine's ``since`` includes it: it is dropped below).
            start = seen.timestamp() if seen else (since if since is not None else began)
            for line in backend.follow_log_lines(c.id, None, start):
                if stop.is_set():
                    return
                if seen is not None and line.at <= seen:
                    continue
                lines.put((source, line))
        except EnvkitError as exc:
            lines.put((source, exc))
        finally:
            lines.put((source, None))

    chosen = sources(info, services)
    threads = [threading.Thread(target=pump, args=pair, daemon=True, name=f"envkit-logs-{pair[0]}")
               for pair in chosen]
    for t in threads:
        t.start()
    open_streams = len(threads)
    try:
        while open_streams:
            source, item = lines.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, EnvkitError):
                raise item
            else:
                yield Entry(item.at, source, item.text)
    finally:
        stop.set()
