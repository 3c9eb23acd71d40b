"""Image tags derived from build-context content: the same context builds once per machine.

The tag is ``envkit/<blueprint>-<context folder>:<hash>``, where the hash covers every file the
build sees (after ``.dockerignore``), their executable bits, the Dockerfile name, build args and
target. Change a byte and the tag changes; change nothing and every run reuses the image.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

from envkit.blueprint.model import Build

__all__ = ["context_digest", "image_tag"]

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


@lru_cache(maxsize=256)
def _digest(context: Path, mtimes: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _, mode in mtimes:
        h.update(rel.encode() + b"\0" + str(mode & 0o111).encode() + b"\0")
        h.update(hashlib.sha256((context / rel).read_bytes()).digest())
    return h.hexdigest()


def context_digest(build: Build) -> str:
    patterns = _ignore_patterns(build.context)
    files: list[tuple[str, int, int]] = []
    for root, dirs, names in os.walk(build.context):
        dirs.sort()
        for name in sorted(names):
            full = Path(root) / name
            rel = full.relative_to(build.context).as_posix()
            if _ignored(rel, patterns) or not full.is_file():
                continue
            st = full.stat()
            files.append((rel, hash((st.st_mtime_ns, st.st_size, st.st_ino)), st.st_mode))
    h = hashlib.sha256(_digest(build.context, tuple(files)).encode())
    # RECIPE changes when what envkit adds to a build changes (its labels), so old images are not reused.
    h.update(repr((RECIPE, build.dockerfile, build.args, build.target)).encode())
    return h.hexdigest()


def image_tag(blueprint: str, build: Build) -> str:
    folder = re.sub(r"[^a-z0-9_.-]", "-", build.context.name.lower()).strip("-.") or "image"
    return f"envkit/{blueprint}-{folder}:{context_digest(build)[:16]}"
