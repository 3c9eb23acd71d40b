"""When tests fail or the session is interrupted: the logs in the report, --envkit-keep, Ctrl-C."""

from __future__ import annotations

import os
import signal
import time

import pytest

import envkit

from .conftest import Inner


def test_a_failing_test_gets_its_services_logs_for_its_time_window(inner: Inner) -> None:
    # The services log asynchronously: a line written just after one test ends can be stamped inside the
    # next test's window. The passing test leaves a clear gap, so its line is outside the failing one's.
    inner.pytester.makepyfile(test_a="""
        import time, urllib.error, urllib.request

        def get(env, path):
            try:
                urllib.request.urlopen(env.outputs["HELLO_URL"] + path, timeout=5).close()
            except urllib.error.HTTPError as exc:
                exc.close()

        def test_passes(envkit_env, note):
            note(envkit_env)
            get(envkit_env, "/before-the-failure")
            time.sleep(0.5)

        def test_fails(envkit_env):
            get(envkit_env, "/during-the-failure")
            assert False, "the shop is broken"
    """)
    result = inner.run()
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    run = next(iter(inner.runs().values()))
    result.stdout.fnmatch_lines([
        "*- envkit logs -*",
        f"run {run}, services' logs from *",
        'web | * "GET /during-the-failure HTTP/1.1" 404',
    ])
    assert "/before-the-failure" not in output  # another test's window


def test_a_test_reaching_the_environment_through_getfixturevalue_gets_the_logs_too(inner: Inner) -> None:
    # As examples/shop's `outputs` fixture does: envkit_env is not among the test's arguments.
    inner.pytester.makepyfile(test_a="""
        import urllib.error, urllib.request

        def test_fails(request, note):
            env = request.getfixturevalue("envkit_env")
            note(env)
            try:
                urllib.request.urlopen(env.outputs["HELLO_URL"] + "/asked-dynamically", timeout=5).close()
            except urllib.error.HTTPError as exc:
                exc.close()
            assert False, "the shop is broken"
    """)
    result = inner.run()
    result.assert_outcomes(failed=1)
    run = next(iter(inner.runs().values()))
    result.stdout.fnmatch_lines([
        "*- envkit logs -*",
        f"run {run}, services' logs from *",
        'web | * "GET /asked-dynamically HTTP/1.1" 404',
    ])


def test_keep_leaves_the_environment_of_a_failing_test_and_says_how_to_remove_it(inner: Inner) -> None:
    inner.pytester.makepyfile(
        test_good="def test_ok(envkit_env, note):\n    note(envkit_env)\n",
        test_bad="def test_broken(envkit_env, note):\n    note(envkit_env)\n    assert False\n",
    )
    result = inner.run("--envkit-keep", "--envkit-scope=module")
    result.assert_outcomes(passed=1, failed=1)
    runs = inner.runs()
    kept, removed = runs["test_bad.py::test_broken"], runs["test_good.py::test_ok"]
    result.stdout.fnmatch_lines([f"kept run {kept} after a failure; remove it with: envkit down {kept}"])
    assert inner.resources([removed]) == []
    assert inner.resources([kept]), "the failing test's run was removed"
    envkit.down([kept])
    assert inner.resources([kept]) == []


@pytest.mark.parametrize(("signum", "xdist"), [
    (signal.SIGINT, ()),
    (signal.SIGTERM, ()),  # how CI systems cancel a job
    (signal.SIGINT, ("-n", "2")),
    (signal.SIGINT, ("-n", "2", "--envkit-shared")),
], ids=["ctrl-c", "sigterm", "ctrl-c-xdist", "ctrl-c-xdist-shared"])
def test_an_interrupted_session_removes_its_environments(inner: Inner, signum: int, xdist: tuple[str, ...]) -> None:
    inner.pytester.makepyfile(test_a="""
        import time

        def test_sleeps(envkit_env, note):
            note(envkit_env)
            time.sleep(60)
    """)
    proc = inner.popen(*xdist)
    try:
        deadline = time.monotonic() + 60
        while not inner.records() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert inner.records(), "the inner test never started"
        time.sleep(0.3)
        began = time.monotonic()
        os.killpg(proc.pid, signum)  # a terminal's Ctrl-C reaches every process of the group
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert time.monotonic() - began < 30
    assert inner.resources(list(inner.runs().values())) == [], output
