"""Content-addressed image tags: a change the build can see changes the tag; nothing else does.

``context_digest`` caches the hashing of a context's files, keyed by their stat data. Each test that
compares digests therefore also checks the answer against a cold computation (``cold``): a cached digest
must be the one hashing the files afresh gives.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from envkit import images
from envkit.blueprint.model import Build
from envkit.images import context_digest, image_tag


def cold(build: Build) -> str:
    """The digest with an empty cache: every file read and hashed."""
    images._digest.cache_clear()
    return context_digest(build)


def warm(build: Build) -> str:
    """The digest as a second call in the same process gets it, checked against a cold computation."""
    digest = context_digest(build)
    assert digest == cold(build), "the cache answered for files that have changed"
    return digest


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "App Image"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY src /src\n")
    (ctx / "src" / "main.py").write_text("print('hello')\n")
    return ctx


def edit(path: Path, text: str) -> None:
    """Write and move the modification time on, as an editor would a moment later."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_the_digest_is_stable_while_nothing_changes(context: Path, tmp_path: Path) -> None:
    first = cold(Build(context))
    assert cold(Build(context)) == first  # hashed twice from scratch
    copy = shutil.copytree(context, tmp_path / "elsewhere" / context.name)
    assert cold(Build(copy)) == first  # the content counts, not where it lies or when it was written
    assert image_tag("shop", Build(copy)) == image_tag("shop", Build(context))


def test_the_digest_and_the_tag_change_when_a_file_changes(context: Path) -> None:
    before, tag = warm(Build(context)), image_tag("shop", Build(context))
    edit(context / "src" / "main.py", "print('bye')\n")
    assert warm(Build(context)) != before
    assert image_tag("shop", Build(context)) != tag


def test_a_same_size_edit_is_seen_with_a_warm_cache(context: Path) -> None:
    before = warm(Build(context))
    edit(context / "src" / "main.py", "print('HELLO')\n")  # as long as before
    assert warm(Build(context)) != before


def test_a_file_replaced_with_its_old_time_and_size_is_seen(context: Path) -> None:
    # An editor that saves by writing a new file and renaming it over the old one, keeping the old
    # modification time (cp -p, rsync -t): only the file's identity tells the cache it changed.
    target = context / "src" / "main.py"
    before = warm(Build(context))
    old = target.stat()
    replacement = context / "src" / ".main.py.new"
    replacement.write_text("print('HELLO')\n")
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(replacement, target)
    assert target.stat().st_mtime_ns == old.st_mtime_ns and target.stat().st_size == old.st_size
    assert warm(Build(context)) != before


def test_the_digest_changes_when_a_file_is_added_or_removed(context: Path) -> None:
    before = warm(Build(context))
    (context / "src" / "extra.py").write_text("")
    added = warm(Build(context))
    (context / "src" / "extra.py").unlink()
    assert len({before, added}) == 2
    assert warm(Build(context)) == before


def test_the_digest_changes_when_a_file_becomes_executable(context: Path) -> None:
    before = warm(Build(context))
    (context / "src" / "main.py").chmod(0o755)
    assert warm(Build(context)) != before


def test_the_digest_covers_dockerfile_name_args_and_target(context: Path) -> None:
    digests = {
        context_digest(Build(context)),
        context_digest(Build(context, dockerfile="Dockerfile.dev")),
        context_digest(Build(context, args=(("VERSION", "1"),))),
        context_digest(Build(context, target="test")),
    }
    assert len(digests) == 4


def test_files_in_dockerignore_do_not_count(context: Path) -> None:
    edit(context / ".dockerignore", "# build output\n*.log\ncache/\n!keep.log\n")
    (context / "cache").mkdir()
    before = warm(Build(context))
    edit(context / "debug.log", "noise\n")
    edit(context / "cache" / "blob", "noise\n")
    assert warm(Build(context)) == before
    edit(context / "keep.log", "kept\n")  # re-included by '!keep.log'
    assert warm(Build(context)) != before


def test_editing_dockerignore_itself_changes_the_digest(context: Path) -> None:
    # Docker sends .dockerignore with the context, so it is part of what a build sees.
    before = warm(Build(context))
    edit(context / ".dockerignore", "*.log\n")
    assert warm(Build(context)) != before


def test_image_tag_names_the_blueprint_and_the_context_folder(context: Path) -> None:
    tag = image_tag("shop", Build(context))
    assert tag == f"envkit/shop-app-image:{context_digest(Build(context))[:16]}"
