"""``envkit exec``: run a command in a service's container, as ``docker exec`` does.

Output is streamed as it comes, stdin is passed on (with ``-i``, and whenever stdin is a pipe or a
file, as in ``echo 'select 42;' | envkit exec RUN db -- psql``), ``-t`` gives the command a terminal
(put in raw mode here, resized with this one), and envkit exits with the command's code. envkit's
options come before RUN (as in ``docker exec``), or right after SERVICE; the command follows them,
after an optional ``--``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO, cast

import click

from envkit.cli.complete import run_ids, run_services
from envkit.errors import UsageError
from envkit.secrets import ScrubbedStream, Secret

if TYPE_CHECKING:
    from envkit.backends.base import ExecSession

__all__ = ["exec_"]

FLAGS = {"-i": ("interactive",), "--interactive": ("interactive",), "-t": ("tty",), "--tty": ("tty",),
         "-it": ("interactive", "tty"), "-ti": ("interactive", "tty"), "--no-stdin": ("no_stdin",)}
VALUED = {"-u": "user", "--user": "user", "--replica": "replica"}


@click.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True,
              help="Pass stdin to COMMAND (the default when stdin is a pipe or a file, not a terminal).")
@click.option("-t", "--tty", is_flag=True, help="Give COMMAND a terminal; with -i for a shell: exec -it RUN SVC sh.")
@click.option("--no-stdin", is_flag=True, help="Never pass stdin, even from a pipe.")
@click.option("-u", "--user", help="Run as this user (name or uid[:gid]).")
@click.option("--replica", type=int, default=1, show_default=True, help="Which replica of SERVICE.")
@click.argument("run", shell_complete=run_ids)
@click.argument("service", shell_complete=run_services)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(interactive: bool, tty: bool, no_stdin: bool, user: str | None, replica: int, run: str, service: str,
          command: tuple[str, ...]) -> int:
    """Run COMMAND in SERVICE's container of RUN; exits with its exit code.

    \b
    envkit exec RUN db -- psql -U shop -c 'select 1' shop
    echo 'select 42;' | envkit exec RUN db -- psql -U shop -At shop
    envkit exec -it RUN db -- sh
    """
    from envkit import api
    from envkit.backends.base import Capability
    from envkit.cli.commands import _engine

    # envkit's own options are taken right after SERVICE too (`exec RUN db -it -- sh`, `--replica 2`):
    # no command is named like them, and "-it" read as a command (or a run id) helps nobody.
    late, command = _own_options(command)
    interactive = interactive or bool(late.get("interactive"))
    tty = tty or bool(late.get("tty"))
    no_stdin = no_stdin or bool(late.get("no_stdin"))
    user = str(late["user"]) if "user" in late else user
    replica = int(str(late["replica"])) if "replica" in late else replica
    if not command:
        raise UsageError("name the COMMAND to run after SERVICE")
    stdin_fd = _stdin(interactive, no_stdin)
    if tty and interactive and (stdin_fd is None or not os.isatty(stdin_fd)):
        raise UsageError("the input device is not a terminal: leave out -t (stdin from a pipe needs no -t)")
    env = api.attach(run, backend=_engine())
    if not env.backend.supports(Capability.INTERACTIVE_EXEC) and not (interactive or tty):
        result = env.exec(service, list(command), replica, user)  # an engine without streams: all at the end
        sys.stdout.write(env.scrub(result.output) if sys.stdout.isatty() else result.output)
        return _code(result.exit_code)
    out, err = _shown(sys.stdout.buffer, env.hidden()), _shown(sys.stderr.buffer, env.hidden())
    sys.stdout.flush()
    with _raw(stdin_fd if tty else None):  # before the command starts: no key typed meanwhile is lost
        session = env.exec_stream(service, command, stdin=stdin_fd, stdout=out, stderr=err, tty=tty,
                                  replica=replica, user=user)
        with _resized(session, stdin_fd) if tty else contextlib.nullcontext():
            code = session.wait()
    for stream in (out, err):
        if isinstance(stream, ScrubbedStream):
            stream.close()
    return _code(code)


def _shown(stream: BinaryIO, hidden: tuple[Secret, ...]) -> BinaryIO:
    """On a terminal, the run's secret values are masked (docs/security.md), as `envkit outputs` masks them;
    into a pipe or a file the command's output passes as it is (`exec … printenv PASSWORD` in a script)."""
    if not hidden or not stream.isatty():
        return stream
    return cast(BinaryIO, ScrubbedStream(stream, hidden))


def _own_options(words: tuple[str, ...]) -> tuple[dict[str, object], tuple[str, ...]]:
    """envkit's options at the start of ``words``, and the command after them (and after a ``--``)."""
    found: dict[str, object] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return found, words[i + 1:]
        name, eq, value = word.partition("=")
        if word in FLAGS:
            found.update(dict.fromkeys(FLAGS[word], True))
        elif name in VALUED:
            if not eq:
                if i + 1 >= len(words):
                    raise UsageError(f"{word} needs a value")
                i += 1
                value = words[i]
            if VALUED[name] == "replica" and not value.isdigit():
                raise UsageError(f"--replica: not a number: {value!r}")
            found[VALUED[name]] = value
        else:
            return found, words[i:]
        i += 1
    return found, ()


def _stdin(interactive: bool, no_stdin: bool) -> int | None:
    """The descriptor to pass on: with -i; else only a pipe or a file (a terminal waits for -i)."""
    if no_stdin:
        return None
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if interactive:
        return fd
    return None if os.isatty(fd) else fd


def _code(code: int) -> int:
    return code if 0 <= code <= 255 else 1


@contextlib.contextmanager
def _raw(fd: int | None) -> Iterator[None]:
    """A terminal on stdin in raw mode (every key goes to the command, Ctrl-C included); restored after."""
    if fd is None or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # not TCSAFLUSH: keep what was typed already
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _resized(session: ExecSession, fd: int | None) -> Iterator[None]:
    """The command's terminal sized like this one, and resized with it (SIGWINCH)."""
    out_fd = sys.stdout.fileno() if sys.stdout.isatty() else fd

    def resize(signum: int | None = None, frame: FrameType | None = None) -> None:
        with contextlib.suppress(OSError, TypeError):
            columns, rows = os.get_terminal_size(out_fd)  # type: ignore[arg-type]
            session.resize(rows, columns)

    resize()
    previous = None
    with contextlib.suppress(ValueError, AttributeError):  # not the main thread, or no SIGWINCH
        previous = signal.signal(signal.SIGWINCH, resize)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
