"""Content-addressed image tags: a change the build can see changes the tag; nothing else does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envkit.blueprint.model import Build
from envkit.images import context_digest, image_tag


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


def test_the_digest_is_stable_while_nothing_changes(context: Path) -> None:
    assert context_digest(Build(context)) == context_digest(Build(context))


def test_the_digest_changes_when_a_file_changes(context: Path) -> None:
    before = context_digest(Build(context))
    edit(context / "src" / "main.py", "print('bye')\n")
    assert context_digest(Build(context)) != before


def test_the_digest_changes_when_a_file_is_added_or_removed(context: Path) -> None:
    before = context_digest(Build(context))
    (context / "src" / "extra.py").write_text("")
    added = context_digest(Build(context))
    (context / "src" / "extra.py").unlink()
    assert len({before, added}) == 2
    assert context_digest(Build(context)) == before


def test_the_digest_changes_when_a_file_becomes_executable(context: Path) -> None:
    before = context_digest(Build(context))
    (context / "src" / "main.py").chmod(0o755)
    assert context_digest(Build(context)) != before


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
    before = context_digest(Build(context))
    edit(context / "debug.log", "noise\n")
    edit(context / "cache" / "blob", "noise\n")
    assert context_digest(Build(context)) == before
    edit(context / "keep.log", "kept\n")  # re-included by '!keep.log'
    assert context_digest(Build(context)) != before


def test_editing_dockerignore_itself_changes_the_digest(context: Path) -> None:
    # Docker sends .dockerignore with the context, so it is part of what a build sees.
    before = context_digest(Build(context))
    edit(context / ".dockerignore", "*.log\n")
    assert context_digest(Build(context)) != before


def test_image_tag_names_the_blueprint_and_the_context_folder(context: Path) -> None:
    tag = image_tag("shop", Build(context))
    assert tag == f"envkit/shop-app-image:{context_digest(Build(context))[:16]}"
