"""Forensics bundles from the plugin: one for each failing test (``--envkit-artifacts``), one for a failed up
(ini ``envkit_artifacts``)."""

from __future__ import annotations

from pathlib import Path

from .conftest import ROOT, Inner


def test_a_failing_test_leaves_a_bundle(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a="""
        import urllib.request

        def test_passes(envkit_env, note):
            note(envkit_env)

        def test_fails(envkit_env):
            urllib.request.urlopen(envkit_env.outputs["HELLO_URL"] + "/health", timeout=5).close()
            assert False, "the greeting is wrong"
    """)
    result = inner.run("--envkit-artifacts=bundles")
    result.assert_outcomes(passed=1, failed=1)
    run = next(iter(inner.runs().values()))
    bundles = sorted((inner.pytester.path / "bundles").iterdir())
    assert [b.name.rsplit("-", 1)[0] for b in bundles] == ["test_a.py_test_fails"]  # the passing test has none
    bundle = bundles[0]
    result.stdout.fnmatch_lines(["*- envkit forensics -*", f"forensics bundle: {bundle / 'SUMMARY.txt'}"])
    summary = (bundle / "SUMMARY.txt").read_text()
    assert summary.startswith(f"envkit: run {run}, collected ")
    assert "test test_a.py::test_fails failed" in summary.splitlines()[0]
    assert "the greeting is wrong" in summary
    assert "no service is at fault" in summary
    assert '"GET /health HTTP/1.1" 200' in (bundle / "services" / f"envkit-{run}-web-1" / "logs.txt").read_text()
    probes = (bundle / "probes.txt").read_text()
    assert "http 8000/health" in probes and "now: http 8000/health" in probes  # while coming up, and at the failure
    assert "ready:web-1" in (bundle / "plan.txt").read_text()
    assert (bundle / "events.jsonl").read_text().count("\n") > 5


def test_a_failed_up_leaves_a_bundle_naming_the_service(inner: Inner) -> None:
    inner.pytester.makeini("[pytest]\nenvkit_artifacts = out\n")
    inner.pytester.makepyfile(test_b="def test_needs_it(envkit_env):\n    pass\n")
    result = inner.run(blueprint=ROOT / "tests" / "blueprints" / "good" / "never-ready")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*forensics bundle in {inner.pytester.path / 'out'}*"])
    bundles = list((inner.pytester.path / "out").iterdir())
    assert len(bundles) == 1
    inner.extra_runs.add(bundles[0].name)  # the run id: checked to be gone
    summary = (bundles[0] / "SUMMARY.txt").read_text()
    assert summary.splitlines()[2].startswith("culprit: service sleepy — not ready after 3s (probe: tcp 9999")
    assert "sleepy: still not listening on 9999" in summary
    assert Path(bundles[0] / "probes.txt").read_text().count("tcp 9999") >= 1
