"""The Docker gate's release (``DockerCapabilities.release_container`` and ``settle``) with a stand-in for
the engine's client: the fallback file is written behind the release, and ``settle`` waits for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from envkit.backends import _docker_caps
from envkit.backends._docker_caps import DockerCapabilities

T = TypeVar("T")


class Api:
    """put_archive of a container waits for that container's event (a slow copy on a busy engine)."""

    def __init__(self) -> None:
        self.slow: dict[str, threading.Event] = {}
        self.written: list[str] = []

    def kill(self, container: str, signal: str) -> None:
        pass

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        if container in self.slow:
            self.slow[container].wait(10)
        self.written.append(container)


class Caps(DockerCapabilities):
    def __init__(self) -> None:
        self.api = Api()
        self._behind = []

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        yield

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        return fn()


def test_settle_waits_for_its_writes_while_another_settle_of_the_backend_waits_too() -> None:
    # One backend, two executors at once (a reset of the api and a live restart of the worker, say): the
    # first to settle must not take the other's write away from it, or the other hands its run over with a
    # gate still shut.
    caps = Caps()
    first, second = threading.Event(), threading.Event()
    caps.api.slow = {"c1": first, "c2": second}
    caps.release_container("c1")  # the first executor's
    caps.release_container("c2")  # the second's
    other = threading.Thread(target=caps.settle)
    other.start()  # the first executor settles
    time.sleep(0.1)
    threading.Timer(0.2, second.set).start()
    threading.Timer(0.4, first.set).start()
    caps.settle()  # the second executor settles
    assert "c2" in caps.api.written
    other.join(5)
    assert sorted(caps.api.written) == ["c1", "c2"]


def test_settle_bounds_its_whole_wait_not_each_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wedged engine: every copy hangs. settle waits SETTLE_TIMEOUT in all, not that long per gate.
    monkeypatch.setattr(_docker_caps, "SETTLE_TIMEOUT", 0.3)
    caps = Caps()
    stuck = threading.Event()
    caps.api.slow = {f"c{i}": stuck for i in range(5)}
    for i in range(5):
        caps.release_container(f"c{i}")
    began = time.monotonic()
    caps.settle()
    waited = time.monotonic() - began
    stuck.set()
    assert waited < 1.0


