"""Each folder in tests/blueprints/bad holds a broken blueprint and the exact error `envkit validate` prints.

The paths in ``expected.txt`` are relative to the repository root, where these tests run the CLI from.
To add a case: make the folder, then (from the repository root) run
``.venv/bin/envkit validate tests/blueprints/bad/<case> 2> tests/blueprints/bad/<case>/expected.txt``
and read what it says before committing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "blueprints" / "bad"
CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir())


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    # Plain text, whatever the terminal, and no variable the cases rely on being unset.
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "ENVKIT_TEST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_there_are_cases() -> None:
    assert len(CASES) >= 16


@pytest.mark.parametrize("case", CASES)
def test_validate_prints_the_expected_error(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = (BAD / case / "expected.txt").read_text(encoding="utf-8")
    code = main(["validate", f"tests/blueprints/bad/{case}"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out == ""
    assert err == expected
    assert code == 3


@pytest.mark.parametrize("case", CASES)
def test_every_problem_names_the_file_and_a_position(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["validate", f"tests/blueprints/bad/{case}"])  # what the program prints, not the golden file
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: invalid blueprint")
    for line in lines[1:]:
        if line.startswith("  hint: "):  # what the problems below have in common: not one of them
            continue
        assert line.startswith(f"  tests/blueprints/bad/{case}/blueprint.yaml:"), line
        line_no, column = line.split(":")[1:3]
        assert int(line_no) > 0 and int(column.split()[0]) > 0, line
