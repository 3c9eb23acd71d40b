"""The readiness polling policy (envkit.probes): fast while a service is young, then backing off to one
check a second; and the error of a service that never got ready shows the first lines of its log too."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from envkit import probes
from envkit.backends.base import ContainerSpec, ExecResult, NetworkAttachment, NetworkSpec
from envkit.backends.fake import FakeBackend
from envkit.blueprint.model import Probe
from envkit.errors import ServiceFailed


def schedule(until: float, costly: bool = False) -> list[tuple[float, float]]:
    """(elapsed, wait) pairs of the policy for a service that never gets ready, up to ``until`` seconds."""
    out, elapsed, previous = [], 0.0, 0.0
    while elapsed < until:
        previous = probes.interval(elapsed, previous, costly)
        out.append((elapsed, previous))
        elapsed += previous
    return out


def test_fast_for_the_first_two_seconds_then_backing_off_to_one_second() -> None:
    waits = schedule(30.0)
    assert [round(w, 3) for _, w in waits[:4]] == [0.02, 0.04, 0.05, 0.05]
    fast = [w for at, w in waits if at < probes.FAST_FOR]
    assert max(fast) == probes.FAST_CAP and 35 <= len(fast) <= 45  # about 20 checks a second, as before
    slow = [w for at, w in waits if at >= probes.FAST_FOR]
    assert slow == sorted(slow) and slow[-1] == probes.SLOW_CAP  # growing, then one a second
    assert all(b <= a * probes.GROWTH + 1e-9 for a, b in itertools.pairwise(slow))
    checks_after_ten_seconds = sum(1 for at, _ in waits if at < 10.0)
    assert checks_after_ten_seconds < 60  # the old policy made ~200 by then: 20 a second
    # exec and log probes, which spawn a process or read the whole log, start slower.
    assert max(w for at, w in schedule(2.0, costly=True)) == probes.FAST_CAP_COSTLY


@pytest.fixture
def fake() -> FakeBackend:
    fake = FakeBackend(images={"img:1"})
    fake.create_network(NetworkSpec("net"))
    return fake


def started(fake: FakeBackend, name: str) -> str:
    ident = fake.create_container(ContainerSpec(name, "img:1", (("io.envkit.service", name),),
                                                (NetworkAttachment("net"),)))
    fake.start_container(ident)
    return ident


def test_wait_ready_follows_the_policy_on_a_slow_service(fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scaled down: fast for 0.2 s, then backing off to a check every 0.1 s.
    monkeypatch.setattr(probes, "FAST_FOR", 0.2)
    monkeypatch.setattr(probes, "FAST_CAP_COSTLY", 0.02)
    monkeypatch.setattr(probes, "SLOW_CAP", 0.1)
    ident = started(fake, "slow")
    fake.exec_results["slow"] = ExecResult(1, "not yet")
    with pytest.raises(ServiceFailed, match=r"service slow: not ready after 1\.2s"):
        probes.wait_ready(fake, ident, "slow", Probe("exec", command=("check",)), 1.2, threading.Event())
    checks = sum(1 for m, _ in fake.calls if m == "exec")
    # 0.2 s at <= 20 ms (~11), then 1 s backing off to 100 ms (~11 more): far below 60 at 20 ms.
    assert 15 <= checks <= 30, checks


def test_a_long_log_shows_its_first_and_last_lines_with_an_ellipsis(fake: FakeBackend, tmp_path: Path) -> None:
    ident = started(fake, "api")
    fake.emit(ident, "api: FATAL config key 'db.url' is missing")  # the real reason, at the start
    fake.emit(ident, "\n".join(f'GET /nope 404 ({i})' for i in range(100)))  # then the probe's requests
    with pytest.raises(ServiceFailed) as caught:
        probes.wait_ready(fake, ident, "api", Probe("log", pattern="listening"), 0.2, threading.Event())
    error = caught.value
    assert error.log_head[0] == "api: FATAL config key 'db.url' is missing" and len(error.log_head) == probes.HEAD_LINES
    assert len(error.log_tail) == probes.LOG_LINES and error.log_tail[-1] == "GET /nope 404 (99)"
    text = str(error)
    assert "first and last log lines of slow" not in text
    assert "first and last log lines of api:" in text and "\n  | …\n" in text
    assert text.index("FATAL") < text.index("…") < text.index("(99)")


def test_a_short_log_is_shown_whole(fake: FakeBackend) -> None:
    ident = started(fake, "api")
    fake.emit(ident, "one\ntwo")
    error = probes.failure(fake, "api", "exited", ident, "envkit-r-api-1")
    assert (error.log_head, error.log_tail) == ((), ("one", "two"))
    assert "last log lines of envkit-r-api-1:\n  | one\n  | two" in str(error) and "…" not in str(error)


class CrashesDuringExec(FakeBackend):
    """The process exits while the engine starts the probe's exec: Docker answers exit 126 (no Conflict)."""

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        self.exit_container(container_id, 1)
        return ExecResult(126, "OCI runtime exec failed: exec failed: cannot exec in a stopped container: unknown")


def test_a_service_that_exits_while_its_exec_probe_starts_is_reported_as_exited() -> None:
    fake = CrashesDuringExec(images={"img:1"})
    fake.create_network(NetworkSpec("net"))
    ident = started(fake, "worker")
    fake.emit(ident, "ValueError: could not convert string to float: 'abc'")
    with pytest.raises(ServiceFailed) as caught:
        probes.wait_ready(fake, ident, "worker", Probe("exec", command=("test", "-f", "/tmp/ready")), 5.0,
                          threading.Event())
    text = str(caught.value)
    assert text.startswith("service worker: exited with code 1 before it was ready"), text
    assert "cannot run" not in text and "ValueError" in text
