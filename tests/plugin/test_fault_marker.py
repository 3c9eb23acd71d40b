"""The envkit_fault marker: a blueprint scenario is applied for the marked test only, and healed after it
(also when the test fails)."""

from __future__ import annotations

from .conftest import Inner

BOX = """\
FROM debian:bookworm-slim
CMD ["sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
"""
BLUEPRINT = """\
name: faulted
services:
  box: {build: ./box}
faults:
  box-frozen: {service: box, pause: true}
"""
TESTS = """
import pytest

def status(env):
    return env.refresh().services["box"][0].status

@pytest.mark.envkit_fault("box-frozen")
def test_a_sees_the_fault(envkit_env):
    assert status(envkit_env) == "paused"
    assert [e.record.kind for e in envkit_env.faults()][-1] == "pause"

@pytest.mark.envkit_fault("box", "stop", grace="1s")
def test_b_fails_under_a_fault(envkit_env):
    assert status(envkit_env) == "exited"
    raise AssertionError("the test fails: the fault is healed anyway")

def test_c_runs_healed(envkit_env):
    assert status(envkit_env) == "running"
    assert all(e.healed_at for e in envkit_env.faults())
"""


def test_the_marker_applies_and_heals(inner: Inner) -> None:
    folder = inner.pytester.path / "bp"
    (folder / "box").mkdir(parents=True)
    (folder / "box" / "Dockerfile").write_text(BOX, encoding="utf-8")
    (folder / "blueprint.yaml").write_text(BLUEPRINT, encoding="utf-8")
    inner.pytester.makepyfile(test_faulted=TESTS)
    result = inner.run(blueprint=folder, timeout=300)
    result.assert_outcomes(passed=2, failed=1)
