"""The kept psql session (envkit.pgsession) and the template swap through it (envkit.reset._swap), against
the fake engine with a psql stand-in that reads its stdin line by line, as psql does from a pipe."""

from __future__ import annotations

import threading
from typing import BinaryIO

import pytest

from envkit import reset as R
from envkit.backends.base import Capability, ContainerSpec
from envkit.backends.fake import FakeBackend
from envkit.errors import EngineError
from envkit.pgsession import PsqlSession, SessionEnded
from envkit.pgtemplate import Postgres, refill_script, swap_script


class FakePsql:
    """Echoes ``\\echo`` lines, records every other line, fails (exit 3) on ``FAIL``; the first
    ``fail_first`` sessions fail on their first swap."""

    def __init__(self, fail_first: int = 0) -> None:
        self.lines: list[str] = []
        self.sessions = 0
        self.fail_first = fail_first
        self.ended = threading.Event()

    def __call__(self, command: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
        assert command[:1] == ("psql",) and "ON_ERROR_STOP=1" in command
        self.sessions += 1
        failing = self.sessions <= self.fail_first
        try:
            while line := stdin.readline():
                text = line.decode().rstrip("\n")
                if text.startswith("\\echo "):
                    stdout.write(text[len("\\echo "):].encode() + b"\n")
                    stdout.flush()
                elif text == "FAIL" or (failing and "RENAME TO" in text):
                    stderr.write(b'ERROR:  database "shop" is being accessed by other users\n')
                    return 3
                else:
                    self.lines.append(text)
            return 0
        finally:
            self.ended.set()


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
    assert psql.lines == ["SELECT 1;", "SELECT 'queued';", "SELECT 2;"]  # the queued script ran before
    session.close()
    assert psql.ended.wait(5)


def test_an_error_ends_the_session_with_the_servers_message(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    backend.exec_programs["db"] = FakePsql()
    session = PsqlSession(backend, ident, "postgres")
    with pytest.raises(SessionEnded, match=r'ended \(exit code 3\): ERROR:  database "shop" is being accessed'):
        session.run("FAIL")
    assert not session.alive
    with pytest.raises(SessionEnded):
        session.send("SELECT 1;")  # nothing is written to a session that ended


def test_the_swap_goes_through_one_kept_session_and_queues_the_refill(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    psql = FakePsql()
    backend.exec_programs["db"] = psql
    pg = Postgres("postgres")
    for _ in range(3):
        R._swap(backend, ident, pg, ["shop"])
    assert psql.sessions == 1 and [c for c in backend.calls if c[0] == "exec_stream"] == [("exec_stream", "envkit-r1-db-1")]
    R._sessions.pop(ident).close()  # the last refill is read before the end of its input
    assert psql.ended.wait(5)
    script = "\n".join(psql.lines)
    assert script.count(swap_script(["shop"]).splitlines()[1]) == 6  # the lock, by 3 swaps and 3 refills
    assert 'ALTER DATABASE "envkit_rdy_shop" RENAME TO "shop";' in script
    assert script.endswith(refill_script(["shop"]).splitlines()[-1])


def test_a_session_that_ended_is_opened_again_once_then_the_error_is_reported(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    backend.exec_programs["db"] = FakePsql(fail_first=1)
    R._swap(backend, ident, Postgres("postgres"), ["shop"])  # the second session does it
    R._sessions.pop(ident).close()
    backend.exec_programs["db"] = FakePsql(fail_first=2)
    with pytest.raises(EngineError, match=r"reset from the template databases: psql in container .* ended"):
        R._swap(backend, ident, Postgres("postgres"), ["shop"])
    assert ident not in R._sessions


def test_without_interactive_exec_or_a_kept_session_it_is_one_exec(db: tuple[FakeBackend, str]) -> None:
    backend, ident = db
    R._swap(backend, ident, Postgres("postgres"), ["shop"], keep=False)
    execs = [c for c in backend.calls if c[0] in ("exec", "exec_stream")]
    assert execs == [("exec", "envkit-r1-db-1")] and ident not in R._sessions
    plain = FakeBackend(images={"pg:1"}, capabilities=frozenset(Capability) - {Capability.INTERACTIVE_EXEC})
    other = plain.create_container(ContainerSpec("envkit-r2-db-1", "pg:1", (), ()))
    plain.start_container(other)
    R._swap(plain, other, Postgres("postgres"), ["shop"])
    assert [c[0] for c in plain.calls if c[0].startswith("exec")] == ["exec"]
