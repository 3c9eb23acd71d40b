"""SIGHUP is taken like SIGTERM wherever SIGTERM is (a closed terminal must not leak a run); nohup is respected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from envkit.signals import Terminated, sigterm_as_interrupt, trap_sigterm


@pytest.fixture
def default_handlers() -> Iterator[None]:
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.mark.usefixtures("default_handlers")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_term_and_hup_raise_terminated_with_their_number(signum: int) -> None:
    with sigterm_as_interrupt(), pytest.raises(Terminated) as info:
        signal.raise_signal(signum)
    assert info.value.signum == signum and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


@pytest.mark.usefixtures("default_handlers")
def test_hup_under_nohup_stays_ignored() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    restore = trap_sigterm()
    assert restore is not None
    try:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.raise_signal(signal.SIGHUP)  # nothing happens
    finally:
        restore()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


@pytest.mark.usefixtures("default_handlers")
def test_a_program_that_handles_term_keeps_hup_too() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, mine)
    assert trap_sigterm(unless_handled=True) is None
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    restore = trap_sigterm()  # the CLI's way: taken whatever was there, and put back
    assert restore is not None
    restore()
    assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_a_hang_up_points_a_hung_up_terminal_at_dev_null_and_leaves_a_live_one() -> None:
    # In a child process: stdout a pseudo-terminal, live, then hung up (its other side closed); stderr a pipe.
    script = textwrap.dedent("""
        import os, pty, signal, sys
        from envkit.signals import Terminated, sigterm_as_interrupt

        def hup():
            try:
                with sigterm_as_interrupt():
                    signal.raise_signal(signal.SIGHUP)
            except Terminated as exc:
                return exc.signum

        keep = os.dup(1)
        master, slave = pty.openpty()
        os.dup2(slave, 1)
        live = (hup(), os.isatty(1))  # a terminal still there (kill -HUP from elsewhere): kept
        os.close(master)  # now it has hung up: every write would fail with EIO
        gone = (hup(), os.isatty(1), os.write(1, b"dropped"))
        os.dup2(keep, 1)
        print(live, gone)
        sys.stderr.write("stderr is still the pipe")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                            env={**os.environ})
    assert result.returncode == 0, result.stderr
    hup = int(signal.SIGHUP)
    assert result.stdout.strip() == f"({hup}, True) ({hup}, False, 7)"  # /dev/null took the 7 bytes
    assert result.stderr == "stderr is still the pipe"
