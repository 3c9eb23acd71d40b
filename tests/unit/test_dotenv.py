"""Env files for ${VAR}, read as Compose reads them (envkit.blueprint.dotenv)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.blueprint import load
from envkit.blueprint.dotenv import variables
from envkit.errors import BlueprintError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_format(tmp_path: Path) -> None:
    f = write(tmp_path / "a.env", (
        "# a comment\n\nexport A=1\nB = two words   # trailing comment\nC='as ${A} \\n written'\n"
        'D="tab\\there \\"q\\" ${A:-x} \\$HOME"\nE="two\nlines"\nF=${B}-${A}\nURL=http://x/#frag\n'
        "FROM_ENV\nABSENT\n"))
    got = variables({"FROM_ENV": "shell"}, [f], None)
    assert got == {"A": "1", "B": "two words", "C": "as ${A} \\n written", "D": 'tab\there "q" 1 $HOME',
                   "E": "two\nlines", "F": "two words-1", "URL": "http://x/#frag", "FROM_ENV": "shell"}


def test_precedence_process_env_then_later_files(tmp_path: Path) -> None:
    one = write(tmp_path / "one.env", "A=one\nB=one\nC=one\n")
    two = write(tmp_path / "two.env", "B=two\nC=${A}-two\n")
    got = variables({"C": "shell"}, [one, two], None)
    assert (got["A"], got["B"], got["C"]) == ("one", "two", "shell")
    # a later file sees what an earlier one set, and the process environment over it
    assert variables({"A": "sh"}, [one, two], None)["C"] == "sh-two"


def test_the_default_env_beside_the_blueprint_and_what_replaces_it(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TAG=from-dotenv\n")
    write(tmp_path / "blueprint.yaml", "name: v\nservices:\n  web:\n    image: nginx:${TAG:-none}\n")
    other = write(tmp_path / "other.env", "TAG=from-other\n")
    assert str(load(tmp_path, {}).services["web"].image) == "nginx:from-dotenv"
    assert str(load(tmp_path, {}, [other]).services["web"].image) == "nginx:from-other"  # replaces .env
    assert str(load(tmp_path, {"TAG": "shell"}).services["web"].image) == "nginx:shell"
    assert str(load(tmp_path, {}, []).services["web"].image) == "nginx:none"


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.env", "OK=1\nno equals here\nQ=\"never closed\nX=1\n")
    with pytest.raises(BlueprintError) as caught:
        variables({}, [f], None)
    text = str(caught.value)
    assert text.startswith("invalid env file (2 problems):")
    assert f"{f}:2:1 no: expected '=' after no" in text
    assert f"{f}:3:1 Q: the \" quote is never closed" in text
    with pytest.raises(BlueprintError, match="env file not found"):
        variables({}, [tmp_path / "missing.env"], None)
    with pytest.raises(BlueprintError, match=r"need it \(required by \$\{R:\?\.\.\.\}\)"):
        variables({}, [write(tmp_path / "r.env", "V=${R:?need it}\n")], None)
