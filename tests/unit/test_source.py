"""Reading a blueprint file: plain data plus where each key path stands in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.blueprint.source import Marks, format_path, read_source
from envkit.errors import BlueprintError, Problem

TEXT = """\
name: shop
services:
  api:
    image: python:3.12-slim
    ports:
      - 8080
      - "9090:9090"
    environment: {A: "1"}
"""


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(BlueprintError) as caught:
        read_source(path)
    return list(caught.value.problems)


@pytest.fixture
def file(tmp_path: Path) -> Path:
    f = tmp_path / "shop.yaml"
    f.write_text(TEXT)
    return f


def test_plain_data_comes_back(file: Path) -> None:
    source = read_source(file)
    assert source.data == {
        "name": "shop",
        "services": {"api": {"image": "python:3.12-slim", "ports": [8080, "9090:9090"], "environment": {"A": "1"}}},
    }
    assert source.file == file
    assert source.directory == file.parent.resolve()


def test_marks_give_line_and_column_of_keys_and_items(file: Path) -> None:
    marks = read_source(file).marks
    assert marks.file == str(file)
    assert marks.at(("name",)) == (1, 1)
    assert marks.at(("services", "api")) == (3, 3)
    assert marks.at(("services", "api", "image")) == (4, 5)
    assert marks.at(("services", "api", "ports", 0)) == (6, 9)
    assert marks.at(("services", "api", "ports", 1)) == (7, 9)
    assert marks.at(("services", "api", "environment", "A")) == (8, 19)


def test_a_path_not_in_the_file_borrows_its_parents_position(file: Path) -> None:
    marks = read_source(file).marks
    assert marks.at(("services", "api", "ports", 1, "container")) == (7, 9)
    assert marks.at(("nowhere",)) == (1, 1)
    assert Marks("x.yaml").at(("a",)) == (0, 0)


def test_problems_carry_file_position_and_key_path(file: Path) -> None:
    problem = read_source(file).marks.problem(("services", "api", "ports", 1), "bad")
    assert problem == Problem(str(file), 7, 9, "services.api.ports[1]", "bad")
    assert str(problem) == f"{file}:7:9 services.api.ports[1]: bad"


@pytest.mark.parametrize(("path", "text"), [
    ((), ""),
    (("services",), "services"),
    (("services", "api", "depends_on", 1), "services.api.depends_on[1]"),
    (("a", 0, 2, "b"), "a[0][2].b"),
])
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_duplicate_keys_are_reported_at_the_second_one(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("services:\n  api:\n    image: a\n    ports: [1]\n    image: b\n")
    assert problems_of(f) == [
        Problem(str(f), 5, 5, "services.api.image", "duplicate key 'image' (first set on line 3); keep only one"),
    ]


def test_merge_keys_may_be_overridden_without_a_duplicate(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("x-base: &base\n  image: a\n  user: app\nservices:\n  api:\n    <<: *base\n    image: b\n")
    source = read_source(f)
    assert source.data["services"]["api"] == {"image": "b", "user": "app"}
    assert source.marks.at(("services", "api", "image")) == (7, 5)  # the override, not the anchor


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("services:\n  api:\n    image: a: b\n")
    assert problems_of(f) == [Problem(str(f), 3, 13, "", "not valid YAML: mapping values are not allowed here")]


def test_invalid_yaml_also_names_where_an_unclosed_construct_began(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("services:\n  api:\n    command: [a, b\n    image: x\n")
    (problem,) = problems_of(f)
    assert (problem.line, problem.column) == (4, 10)
    assert problem.message == ("not valid YAML: expected ',' or ']', but got ':' "
                               "(while parsing a flow sequence started at line 3, column 14)")


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("name: !!python/name:os.system x\n")
    (problem,) = problems_of(f)
    assert (problem.line, problem.column) == (1, 7)
    assert problem.message.startswith("not valid YAML: could not determine a constructor")


def test_tags_on_mappings_and_lists_are_refused_not_dropped(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("services: !!python/object/apply:os.system [true]\nports: !reset []\n")
    assert problems_of(f) == [
        Problem(str(f), 1, 1, "services", "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
        Problem(str(f), 2, 1, "ports", "unsupported YAML tag '!reset'"),
    ]


def test_port_pairs_stay_strings_not_base_60_numbers(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("ports: [22:22, 2222:22, 1:30.5, 8080, 1.5, 0x10]\n")
    assert read_source(f).data["ports"] == ["22:22", "2222:22", "1:30.5", 8080, 1.5, 16]


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("- a\n- b\n")
    assert problems_of(f) == [Problem(str(f), 1, 1, "", "the top level must be a mapping (name:, services:, ...)")]


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("# nothing yet\n")
    assert read_source(f).data == {}


def test_a_folder_means_its_blueprint_yaml(tmp_path: Path) -> None:
    (tmp_path / "blueprint.yaml").write_text("name: x\n")
    source = read_source(tmp_path)
    assert source.file == tmp_path / "blueprint.yaml"
    assert source.data == {"name": "x"}


def test_a_folder_may_hold_blueprint_yml(tmp_path: Path) -> None:
    (tmp_path / "blueprint.yml").write_text("name: x\n")
    assert read_source(tmp_path).file == tmp_path / "blueprint.yml"


def test_a_folder_without_a_blueprint_is_reported(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [Problem(str(tmp_path), 0, 0, "", "folder holds no blueprint.yaml")]
    assert str(problems_of(tmp_path)[0]) == f"{tmp_path}: folder holds no blueprint.yaml"


def test_a_missing_path_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [Problem(str(missing), 0, 0, "", "no such file or folder")]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_bytes(b"name: \xff\xfe\n")
    (problem,) = problems_of(f)
    assert problem.message.startswith("cannot read: ")
