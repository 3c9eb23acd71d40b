"""The Docker gate (``DockerCapabilities``) with a stand-in for the engine's client: the release's fallback
file is written behind it and ``settle`` waits for it; whether an image has a shell is kept on file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from envkit import retry
from envkit.backends import _docker_caps
from envkit.backends._docker_caps import DockerCapabilities
from envkit.backends.base import ContainerSpec
from envkit.errors import NotFound, Transient

T = TypeVar("T")


class Api:
    """put_archive of a container waits for that container's event (a slow copy on a busy engine)."""

    def __init__(self) -> None:
        self.slow: dict[str, threading.Event] = {}
        self.written: list[str] = []

    def kill(self, container: str, signal: str) -> None:
        if signal != "SIGWINCH":
            self.written.append(f"{signal} {container}")

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        if container in self.slow:
            self.slow[container].wait(10)
        self.written.append(container)

    def stop(self, container: str, timeout: int) -> None:
        self.written.append(f"stop {container}")


class Caps(DockerCapabilities):
    def __init__(self) -> None:
        self.api = Api()
        self._behind = []

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        yield

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        return fn()

    def _retried(self, what: str, fn: Callable[[], T]) -> T:
        return retry.call(lambda: self._once(what, fn), sleep=lambda _: None)


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




@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_container_stopped_after_its_release_has_its_file_first(how: str) -> None:
    # The gate is the container's entrypoint: started again (after the snapshot's stop, envkit restart, a
    # stop fault healed, a restart policy), it opens by the file alone. A stop that came before the write
    # behind the release left it shut for good (and a snapshot committed then kept it shut in its image).
    caps = Caps()
    slow = threading.Event()
    caps.api.slow = {"c1": slow}
    caps.release_container("c1")
    threading.Timer(0.2, slow.set).start()
    if how == "stop":
        caps.stop_container("c1", 10)
    else:
        caps.kill_container("c1")
    assert caps.api.written == ["c1", "stop c1" if how == "stop" else "SIGKILL c1"]


def test_the_file_behind_the_release_is_written_again_after_a_passing_fault() -> None:
    # It was written once and any error dropped in silence: a gate that missed the signal stayed shut.
    caps = Caps()
    failures = [Transient("engine busy")]

    def once(what: str, fn: Callable[[], T]) -> T:
        if what.startswith("release file") and failures:
            raise failures.pop()
        return fn()

    caps._once = once  # type: ignore[method-assign]
    caps.release_container("c1")
    caps.settle()
    assert caps.api.written == ["c1"]


class Gating(Caps):
    """create_gated_container's calls: an image with an id; the container the shell check looks into
    is removed under it (a teardown from elsewhere) when ``vanish`` is set."""

    def __init__(self, vanish: bool) -> None:
        super().__init__()
        self.vanish = vanish
        self.containers: set[str] = set()
        self.api.inspect_image = lambda image: {"Id": "sha256:" + "ab" * 32, "Config": {"Cmd": ["serve"]}}
        self.api.inspect_container = self._inspect

    def _inspect(self, container_id: str) -> dict[str, object]:
        if container_id not in self.containers:
            raise NotFound(f"no such container: {container_id}")
        return {"Id": container_id}

    def create_container(self, spec: ContainerSpec) -> str:
        ident = f"c{len(self.containers)}"
        self.containers.add(ident)
        return ident

    def remove_container(self, container_id: str, grace: float) -> None:
        self.containers.discard(container_id)

    def _retried(self, what: str, fn: Callable[[], T]) -> T:
        return fn()

    def copy_from(self, container_id: str, path: str) -> bytes:
        if self.vanish:
            self.containers.discard(container_id)
        raise NotFound(f"no such container: {container_id}" if self.vanish else f"could not find {path}")


@pytest.mark.parametrize("vanish", [False, True])
def test_an_image_is_put_on_file_as_having_no_shell_only_when_its_container_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vanish: bool) -> None:
    # The answer on file is kept for good (an image id names fixed content): a container removed under the
    # check (NotFound too) says nothing of the image, and must not put it on file as having no /bin/sh,
    # which left every later run of it ungated.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_docker_caps, "_SHELLS", {})
    caps = Gating(vanish)
    spec = ContainerSpec("envkit-r-app-1", "example/app:1", (), ())
    _ident, gated = caps.create_gated_container(spec)
    assert not gated  # a plain start, as before, either way
    on_file = _docker_caps._shell_on_file("sha256:" + "ab" * 32)
    assert on_file is (None if vanish else False)
    assert _docker_caps._SHELLS.get("sha256:" + "ab" * 32) is (None if vanish else False)
