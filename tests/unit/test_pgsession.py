"""The kept psql session (envkit.pgsession) and the template swap through it (envkit.reset._swap), against
the fake engine with a psql stand-in that reads its stdin line by line, as psql does from a pipe."""

from __future__ import annotations

import threading
from typing import BinaryIO

import pytest

from envkit import pgsession as R
from envkit.backends.base import Capability, ContainerSpec
from envkit.backends.fake import FakeBackend
from envkit.errors import EngineError
from envkit.pgsession import PsqlSession, SessionEnded
from envkit.pgtemplate import Postgres, refill_script, swap_script


class FakePsql:
    """Echoes ``\\echo`` lines, records every other line (by session), fails (exit 3) on ``FAIL``, and on
    the first ``failures`` renames."""

    def __init__(self, failures: int = 0) -> None:
        self.lines: dict[int, list[str]] = {}
        self.failures = failures
        self.ended = threading.Semaphore(0)
        self._lock = threading.Lock()

    @property
    def sessions(self) -> int:
        return len(self.lines)

    def __call__(self, command: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
        assert command[:1] == ("psql",) and "ON_ERROR_STOP=1" in command
        with self._lock:
            mine = self.lines.setdefault(len(self.lines) + 1, [])
        try:
            while line := stdin.readline():
                text = line.decode().rstrip("\n")
                with self._lock:
                    failing = text == "FAIL" or ("RENAME TO" in text and self.failures > 0)
                    self.failures -= "RENAME TO" in text and failing
                if text.startswith("\\echo "):
                    stdout.write(text[len("\\echo "):].encode() + b"\n")
                    stdout.flush()
                elif failing:
                    stderr.write(b'ERROR:  database "shop" is being accessed by other users\n')
                    return 3
                else:
                    mine.append(text)
            return 0
        finally:
            self.ended.release()


@pytest.fixture
def db() -> tuple[FakeBackend, str]:
    backend = FakeBackend(images={"pg:1"})
    ident = backend.create_container(ContainerSpec("envkit-r1-db-1", "pg:1", (("io.envkit.service", "db"),), ()))
    backend.start_container(ident)
    return backend, ident


def test_scripts_run_in_order_and_each_run_returns_its_own_output(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    psql = FakePsql()
    backend.exec_programs["db"] = psql
    session = PsqlSession(backend, ident, "postgres")
    assert session.run("SELECT 1;\n\\echo one") == "one\n"
    session.send("SELECT 'queued';")
    assert session.run("SELECT 2;") == ""
    assert psql.lines[1] == ["SELECT 1;", "SELECT 'queued';", "SELECT 2;"]  # the queued script ran before
    session.close()
    assert psql.ended.acquire(timeout=5)
    assert not session.alive


def test_an_error_ends_the_session_with_the_servers_message(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    backend.exec_programs["db"] = FakePsql()
    session = PsqlSession(backend, ident, "postgres")
    with pytest.raises(SessionEnded, match=r'ended \(exit code 3\): ERROR:  database "shop" is being accessed'):
        session.run("FAIL")
    assert not session.alive
    with pytest.raises(SessionEnded):
        session.send("SELECT 1;")  # nothing is written to a session that ended


def test_swaps_go_through_one_kept_session_and_refills_through_another(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    psql = FakePsql()
    backend.exec_programs["db"] = psql
    for _ in range(3):
        R.swap(backend, ident, Postgres("postgres"), ["shop"])
    assert R.kept(ident) and [c for c in backend.calls if c[0] == "exec_stream"] == [("exec_stream", "envkit-r1-db-1")] * 2
    for s in R._kept.pop(ident):
        s.close()  # the last refill is read before the end of its input
    assert psql.ended.acquire(timeout=5) and psql.ended.acquire(timeout=5)
    swaps, refills = sorted(("\n".join(lines) for lines in psql.lines.values()), key=lambda t: "RENAME TO" not in t)
    lock = swap_script(["shop"]).splitlines()[1]
    assert lock.startswith("SELECT pg_advisory_lock(") and swaps.count(lock) == refills.count(lock) == 3
    assert swaps.count('ALTER DATABASE "envkit_rdy_shop" RENAME TO "shop";') == 3
    assert refills.endswith(refill_script(["shop"]).splitlines()[-1]) and "CREATE DATABASE" in refills


def test_a_session_that_ended_is_opened_again_once_then_the_error_is_reported(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    backend.exec_programs["db"] = psql = FakePsql(failures=1)
    R.swap(backend, ident, Postgres("postgres"), ["shop"])  # a second swap session does it
    assert psql.sessions == 3 and R.kept(ident)
    backend.exec_programs["db"] = FakePsql(failures=2)
    for s in R._kept.pop(ident):
        s.close()
    with pytest.raises(EngineError, match=r"reset from the template databases: psql in container .* ended"):
        R.swap(backend, ident, Postgres("postgres"), ["shop"])
    assert not R.kept(ident)
    R._kept.pop(ident)[1].close()


def test_without_interactive_exec_or_a_kept_session_it_is_one_exec(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    R.swap(backend, ident, Postgres("postgres"), ["shop"], keep=False)
    execs = [c for c in backend.calls if c[0] in ("exec", "exec_stream")]
    assert execs == [("exec", "envkit-r1-db-1")] and not R.kept(ident)
    plain = FakeBackend(images={"pg:1"}, capabilities=frozenset(Capability) - {Capability.INTERACTIVE_EXEC})
    other = plain.create_container(ContainerSpec("envkit-r2-db-1", "pg:1", (), ()))
    plain.start_container(other)
    R.swap(plain, other, Postgres("postgres"), ["shop"])
    assert [c[0] for c in plain.calls if c[0].startswith("exec")] == ["exec"]
