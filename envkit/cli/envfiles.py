"""Env files on the command line, with Compose's meaning: ``--env-file FILE`` *reads* variables for
``${VAR}`` (see ``envkit.blueprint.dotenv``); ``--write-env FILE`` writes a run's outputs.

A written file starts with a marker line. envkit replaces a file only when it carries that marker (it
wrote it) or when ``--force`` says so: a ``.env`` the user wrote is never overwritten by surprise.
Written files are readable by their owner only (0600: outputs hold passwords), replaced atomically, and
hold ``ENVKIT_RUN=<run id>`` beside the outputs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from envkit.errors import UsageError
from envkit.outputs import to_dotenv

__all__ = ["MARKER", "check_writable", "env_file_option", "read_files", "write_env", "write_env_options"]

MARKER = "# written by envkit"
F = TypeVar("F", bound=Callable[..., Any])


def env_file_option(fn: F) -> F:
    return click.option(
        "--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
        help="Read variables for ${VAR} from FILE, as Compose does (repeatable: later files win). Replaces "
             "the .env beside the blueprint, read by default; the process environment wins over both.")(fn)


def write_env_options(fn: F) -> F:
    fn = click.option("--force", is_flag=True,
                      help="With --write-env: replace FILE even if envkit did not write it.")(fn)
    return click.option("--write-env", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                        help="Write the outputs and ENVKIT_RUN (the run id) to FILE as KEY=value lines (mode "
                             "0600). A file envkit did not write is refused unless --force.")(fn)


def read_files(files: tuple[Path, ...]) -> list[Path] | None:
    """The ``--env-file`` files for the loader (None: none given, so the default ``.env`` is read)."""
    for f in files:
        if not f.exists():
            raise UsageError(f"--env-file {f}: no such file (--env-file reads variables, as in Compose; "
                             "to write the outputs to a file use --write-env FILE)")
    return list(files) if files else None


def written_by_envkit(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(MARKER)
    except OSError:
        return False


def check_writable(path: Path, force: bool) -> None:
    """Raise UsageError unless ``write_env`` may write ``path``."""
    if path.is_dir():
        raise UsageError(f"--write-env {path}: is a folder")
    if path.exists() and not force and not written_by_envkit(path):
        raise UsageError(f"--write-env {path}: the file exists and envkit did not write it; choose another "
                         "file, or pass --force to replace it")


def write_env(path: Path, values: dict[str, str], run_id: str, force: bool) -> None:
    """Write ``values`` as dotenv to ``path`` (see the module's docstring for when it refuses), with
    ``ENVKIT_RUN`` (the run id, over an output of that name, as ``envkit run`` and ``--github-output`` give
    it) among them: a shell that sources the file can ``envkit down "$ENVKIT_RUN"``."""
    check_writable(path, force)
    lines = sorted({**values, "ENVKIT_RUN": run_id}.items())
    text = f"{MARKER} for run {run_id}; envkit may replace this file\n" + to_dotenv(dict(lines))
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)  # mode 0600
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
