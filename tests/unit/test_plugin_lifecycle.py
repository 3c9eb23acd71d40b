"""The plugin's lifetime labels and ttl (envkit.gc) and its forensics bundles, on the fake engine."""

from __future__ import annotations

import pytest

from tests.unit.test_plugin_session import Engine, engine, run

__all__ = ["engine"]  # the fixture, used by name

LABELS = """
def test_labels(envkit_env):
    labels = envkit_env.info.containers[0].labels
    assert labels["io.envkit.lifetime"] == "{lifetime}"
    assert ("io.envkit.expires-at" in labels) is {expires}
"""


def test_an_environment_is_its_owners_and_expires_only_when_asked(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=LABELS.format(lifetime="owner", expires=False))
    run(pytester, engine).assert_outcomes(passed=1)
    pytester.makepyfile(test_a=LABELS.format(lifetime="owner", expires=True))
    run(pytester, engine, "--envkit-ttl=30m").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nenvkit_ttl = 2h\n")
    run(pytester, engine).assert_outcomes(passed=1)
    assert engine.left() == []


def test_a_run_that_may_be_kept_is_detached(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=LABELS.format(lifetime="detached", expires=False))
    run(pytester, engine, "--envkit-keep").assert_outcomes(passed=1)
    assert engine.left() == []  # kept only after a failure


def test_a_bad_ttl_is_a_usage_error(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a="def test_x():\n    pass\n")
    result = run(pytester, engine, "--envkit-ttl=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--envkit-ttl / envkit_ttl 'soon': use a duration such as 4h*"])


def test_a_failing_test_leaves_a_bundle(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a="def test_fails(envkit_env):\n    assert 1 == 2, 'numbers differ'\n")
    result = run(pytester, engine, "--envkit-artifacts=out")
    result.assert_outcomes(failed=1)
    bundles = list((pytester.path / "out").iterdir())
    assert [b.name.rsplit("-", 1)[0] for b in bundles] == ["test_a.py_test_fails"]
    result.stdout.fnmatch_lines(["*- envkit forensics -*", f"forensics bundle: {bundles[0] / 'SUMMARY.txt'}"])
    summary = (bundles[0] / "SUMMARY.txt").read_text()
    assert "test test_a.py::test_fails failed" in summary.splitlines()[0] and "numbers differ" in summary
    assert "numbers differ" in (bundles[0] / "reason.txt").read_text()
    assert engine.left() == []
