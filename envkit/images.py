"""Image tags derived from build-context content: the same context builds once per machine.

The tag is ``envkit/<blueprint>-<context folder>:<hash>``, where the hash covers every file the
build sees (after ``.dockerignore``), their executable bits, the Dockerfile name, build args and
target. Change a byte and the tag changes; change nothing and every run reuses the image.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from envkit.blueprint.model import Blueprint, Build
from envkit.errors import BlueprintError, EnvkitError
from envkit.stubs.image import CONTEXT as STUB_CONTEXT

__all__ = ["MAX_BYTES", "MAX_FILES", "ContextError", "context_digest", "image_tag", "image_tags"]

RECIPE = 2


def _ignore_patterns(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    file = context / ".dockerignore"
    if not file.is_file():
        return []
    out = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        out.append((negate, _pattern_regex(os.path.normpath(pattern.strip("/")))))
    return out


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore rules: ``*`` and ``?`` stay within one path segment, ``**`` spans any
    number of them, and a match on a folder covers everything below it."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}(?:/.*)?$")


def _ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negate, pattern in patterns:
        if pattern.match(rel):
            ignored = not negate
    return ignored


#: a build context larger than this is refused before it is read (a context of ``/`` would walk the whole disk)
MAX_FILES = 50_000
MAX_BYTES = 2 * 1024**3


class ContextError(EnvkitError):
    """A build context that cannot be hashed: unreadable, or too large. ``image_tags`` names the service."""


@lru_cache(maxsize=256)
def _digest(context: Path, mtimes: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _, mode in mtimes:
        h.update(rel.encode() + b"\0" + str(mode & 0o111).encode() + b"\0")
        full = context / rel
        try:
            # A link is sent to the engine as a link: its text is hashed, never what it points at.
            data = os.readlink(full).encode() if stat.S_ISLNK(mode) else full.read_bytes()
        except OSError as exc:
            raise ContextError(f"cannot read {full}: {exc.strerror}") from exc
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _files(context: Path) -> list[tuple[str, int, int]]:
    patterns = _ignore_patterns(context)
    files: list[tuple[str, int, int]] = []
    size = 0

    def unreadable(exc: OSError) -> None:
        raise ContextError(f"cannot read {exc.filename}: {exc.strerror}")

    for root, dirs, names in os.walk(context, onerror=unreadable):
        dirs.sort()
        for name in sorted(names):
            full = Path(root) / name
            rel = full.relative_to(context).as_posix()
            if _ignored(rel, patterns):
                continue
            try:
                st = full.lstat()
            except OSError as exc:
                raise ContextError(f"cannot read {full}: {exc.strerror}") from exc
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue  # sockets, fifos, devices: not sent to the engine (and a fifo would block a read)
            size += st.st_size if stat.S_ISREG(st.st_mode) else 0
            files.append((rel, hash((st.st_mtime_ns, st.st_size, st.st_ino)), st.st_mode))
            if len(files) > MAX_FILES or size > MAX_BYTES:
                raise ContextError(f"build context {context} is too large (more than {MAX_FILES} files or "
                                   f"{MAX_BYTES // 1024**3} GiB); point 'build' at a smaller folder or add a "
                                   ".dockerignore")
    return files


def context_digest(build: Build) -> str:
    """Raises ContextError for a context that cannot be read or is too large."""
    if (build.context / ".dockerignore").is_file() and not os.access(build.context / ".dockerignore", os.R_OK):
        raise ContextError(f"cannot read {build.context / '.dockerignore'}: permission denied")
    h = hashlib.sha256(_digest(build.context, tuple(_files(build.context))).encode())
    # RECIPE changes when what envkit adds to a build changes (its labels), so old images are not reused.
    h.update(repr((RECIPE, build.dockerfile, build.args, build.target)).encode())
    return h.hexdigest()


def image_tags(bp: Blueprint, services: Iterable[str]) -> dict[str, str]:
    """The content tag of each of ``services`` that builds; a context that cannot be hashed is a
    BlueprintError naming the service's ``build`` (every such service, not just the first)."""
    tags: dict[str, str] = {}
    problems = []
    for name in services:
        build = bp.services[name].build
        if build is None:
            continue
        try:
            tags[name] = image_tag(bp.name, build)
        except ContextError as exc:
            problems.append(bp.marks.problem(("services", name, "build"), str(exc)))
    if problems:
        raise BlueprintError(problems)
    return tags


def image_tag(blueprint: str, build: Build) -> str:
    if build.context == STUB_CONTEXT:  # the packaged stub server: one image for every blueprint
        return f"envkit/stub:{context_digest(build)[:16]}"
    folder = re.sub(r"[^a-z0-9_.-]", "-", build.context.name.lower()).strip("-.") or "image"
    return f"envkit/{blueprint}-{folder}:{context_digest(build)[:16]}"
