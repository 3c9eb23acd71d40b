"""``${VAR}`` interpolation: every form, on plain data, with problems located by key path."""

from __future__ import annotations

from typing import Any

import pytest

from envkit.blueprint.interpolate import interpolate
from envkit.blueprint.source import Marks
from envkit.errors import Problem

ENV = {"SET": "value", "EMPTY": ""}


def run(text: Any, env: dict[str, str] | None = None) -> tuple[Any, list[Problem]]:
    marks = Marks("bp.yaml", {(): (1, 1), ("x",): (3, 5)})
    problems: list[Problem] = []
    out = interpolate({"x": text}, ENV if env is None else env, marks, problems)
    return out["x"], problems


def sub(text: str) -> str:
    value, problems = run(text)
    assert problems == []
    return str(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("${SET}", "value"),
    ("${UNSET}", ""),
    ("a-${SET}-b", "a-value-b"),
    ("${SET}${SET}", "valuevalue"),
    # ${V:-d}: the default when unset or empty
    ("${SET:-d}", "value"),
    ("${EMPTY:-d}", "d"),
    ("${UNSET:-d}", "d"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a b:c}", "a b:c"),
    # ${V-d}: the default only when unset
    ("${SET-d}", "value"),
    ("${EMPTY-d}", ""),
    ("${UNSET-d}", "d"),
    # ${V:+x}: x when set and not empty
    ("${SET:+x}", "x"),
    ("${EMPTY:+x}", ""),
    ("${UNSET:+x}", ""),
    # ${V+x}: x when set, even empty
    ("${EMPTY+x}", "x"),
    ("${UNSET+x}", ""),
    # required, and set
    ("${SET:?must be set}", "value"),
    ("${SET?must be set}", "value"),
    ("${EMPTY?may be empty}", ""),
    # $$ is a literal $, and what it makes is not read again
    ("$$", "$"),
    ("price: $$5", "price: $5"),
    ("$${SET}", "${SET}"),
    ("${UNSET:-$$HOME}", "$HOME"),
    # a default may itself use a variable, evaluated only when needed
    ("${UNSET:-${SET}}", "value"),
    ("${UNSET:-${ALSO_UNSET:-d}}", "d"),
    ("${SET:-${UNSET:?not needed}}", "value"),
    ("${SET:+${SET}-x}", "value-x"),
    ("${UNSET:-$${SET}}", "${SET}"),
    # no braces: left alone
    ("$SET and $1", "$SET and $1"),
])
def test_forms(text: str, expected: str) -> None:
    assert sub(text) == expected


@pytest.mark.parametrize("text", [
    "${services.api.host}",
    "${services.db.ports.5432}",
    "${run.id}",
    "postgresql://${services.db.host}:${services.db.ports.5432}/app",
    "${services.payments-stub.host}",
])
def test_dotted_references_belong_to_the_run_and_are_kept(text: str) -> None:
    assert sub(text) == text


def test_dotted_references_are_kept_beside_variables() -> None:
    assert sub("http://${services.api.host}:${SET}") == "http://${services.api.host}:value"


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET:?set UNSET to a token}", "set UNSET to a token (required by ${UNSET:?...})"),
    ("${EMPTY:?must not be empty}", "must not be empty (required by ${EMPTY:?...})"),
    ("${UNSET?must be set}", "must be set (required by ${UNSET?...})"),
    ("${UNSET:?}", "variable UNSET must be set (required by ${UNSET:?...})"),
])
def test_required_variables_report_their_message_at_the_key(text: str, message: str) -> None:
    value, problems = run(text)
    assert value == ""
    assert problems == [Problem("bp.yaml", 3, 5, "x", message)]


def test_an_invalid_expression_is_reported() -> None:
    value, problems = run("${1ABC}")
    assert value == "${1ABC}"
    assert problems == [Problem("bp.yaml", 3, 5, "x", "invalid interpolation '${1ABC}'")]


def test_every_problem_is_collected() -> None:
    _, problems = run("${A:?first} ${B:?second}", env={})
    assert [p.message for p in problems] == ["first (required by ${A:?...})", "second (required by ${B:?...})"]


def test_nested_data_is_walked_and_other_values_are_untouched() -> None:
    marks = Marks("bp.yaml")
    problems: list[Problem] = []
    data = {"services": {"api": {"image": "app:${SET}", "replicas": 2, "ports": ["${UNSET:-8080}", 9090],
                                 "privileged": False, "user": None}}}
    assert interpolate(data, ENV, marks, problems) == {
        "services": {"api": {"image": "app:value", "replicas": 2, "ports": ["8080", 9090], "privileged": False,
                             "user": None}},
    }
    assert problems == []


def test_the_problem_path_of_a_list_item_is_its_index() -> None:
    marks = Marks("bp.yaml", {("ports", 1): (7, 9)})
    problems: list[Problem] = []
    interpolate({"ports": ["80", "${PORT:?set PORT}"]}, {}, marks, problems)
    assert problems == [Problem("bp.yaml", 7, 9, "ports[1]", "set PORT (required by ${PORT:?...})")]


def test_an_unclosed_brace_is_left_alone_quickly() -> None:
    text = "${" + "x" * 5000 + "${a" * 5000
    assert sub(text) == text


def test_the_environment_given_is_the_only_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_TEST_ONLY_IN_OS", "os")
    assert sub("${ENVKIT_TEST_ONLY_IN_OS:-given}") == "given"
