"""envkit_env's lifetime: one environment per session, module or test; markers; attaching to a live run."""

from __future__ import annotations

import urllib.request

import envkit

from .conftest import HELLO, Inner

TWO_TESTS = """
def test_one(envkit_env, note):
    note(envkit_env)

def test_two(envkit_env, note):
    note(envkit_env)
"""


def test_session_scope_is_the_default_one_environment_for_every_test(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a=TWO_TESTS, test_b=TWO_TESTS)
    result = inner.run()
    result.assert_outcomes(passed=4)
    runs = inner.runs()
    assert len(runs) == 4 and len(set(runs.values())) == 1, runs
    assert all(r["alive"] and r["services"] == ["web"] for r in inner.records())
    assert inner.resources(list(runs.values())) == []


def test_module_scope_from_the_ini_file_one_environment_per_module(inner: Inner) -> None:
    inner.pytester.makeini("[pytest]\nenvkit_scope = module\n")
    inner.pytester.makepyfile(test_a=TWO_TESTS, test_b=TWO_TESTS)
    inner.run().assert_outcomes(passed=4)
    runs = inner.runs()
    assert runs["test_a.py::test_one"] == runs["test_a.py::test_two"]
    assert runs["test_b.py::test_one"] == runs["test_b.py::test_two"]
    assert runs["test_a.py::test_one"] != runs["test_b.py::test_one"]


def test_function_scope_a_fresh_environment_per_test_removed_after_it(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a="""
        import json
        from pathlib import Path
        from envkit import labels as L
        from envkit.backends import connect

        def earlier_runs_are_gone():
            record = Path(__file__).with_name("runs.jsonl")
            earlier = [json.loads(line)["run"] for line in record.read_text().splitlines()] if record.exists() else []
            backend = connect()
            try:
                return all(not backend.list_resources({L.MANAGED: "true", L.RUN: run}) for run in earlier)
            finally:
                backend.close()

        def test_one(envkit_env, note):
            note(envkit_env, clean=earlier_runs_are_gone())

        def test_two(envkit_env, note):
            note(envkit_env, clean=earlier_runs_are_gone())

        def test_three(envkit_env, note):
            note(envkit_env, clean=earlier_runs_are_gone())
    """)
    inner.run("--envkit-scope=function").assert_outcomes(passed=3)
    assert len(set(inner.runs().values())) == 3
    assert all(r["clean"] for r in inner.records())


def test_a_marker_gives_a_module_class_or_test_its_own_blueprint_and_scope(inner: Inner) -> None:
    # A second blueprint that reuses hello's image (same name and build context) but calls its service
    # `greeter`: which blueprint a test got shows in its services.
    inner.pytester.path.joinpath("greeter").mkdir()
    inner.pytester.path.joinpath("greeter", "blueprint.yaml").write_text(f"""
name: hello
services:
  greeter:
    build: {HELLO / 'web'}
    allow: [host-paths]
    ports: [8000]
    ready: {{http: {{port: 8000, path: /health}}}}
outputs:
  GREETER_URL: http://${{services.greeter.host}}:${{services.greeter.ports.8000}}
""", encoding="utf-8")
    inner.pytester.makepyfile(
        test_a="""
            import pytest
            pytestmark = pytest.mark.envkit("greeter")   # relative to the rootdir; scope: the module

            def test_one(envkit_env, note):
                note(envkit_env)

            def test_two(envkit_env, note):
                note(envkit_env)
        """,
        test_b="""
            import pytest

            def test_unmarked(envkit_env, note):
                note(envkit_env)

            @pytest.mark.envkit("greeter")                # scope: the class
            class TestMarked:
                def test_one(self, envkit_env, note):
                    note(envkit_env)

                def test_two(self, envkit_env, note):
                    note(envkit_env)

            @pytest.mark.envkit("greeter", scope="function")
            @pytest.mark.parametrize("n", [1, 2])
            def test_each(envkit_env, note, n):
                note(envkit_env)

            def test_unmarked_again(envkit_env, note):
                note(envkit_env)
        """,
        test_c="""
            import pytest
            pytestmark = pytest.mark.envkit("greeter", scope="function")  # the mark's scope overrides

            def test_one(envkit_env, note):
                note(envkit_env)

            def test_two(envkit_env, note):
                note(envkit_env)
        """,
    )
    result = inner.run("-v")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["*test_b.py::test_each[[]1[]] PASSED*"])  # test ids are unchanged
    runs = inner.runs()
    services = {r["test"]: r["services"] for r in inner.records()}
    session = runs["test_b.py::test_unmarked"]
    assert services["test_b.py::test_unmarked"] == ["web"]
    assert runs["test_b.py::test_unmarked_again"] == session  # the session's environment, not a second one
    assert runs["test_a.py::test_one"] == runs["test_a.py::test_two"] != session
    assert runs["test_b.py::TestMarked::test_one"] == runs["test_b.py::TestMarked::test_two"]
    marked = [t for t in runs if t not in ("test_b.py::test_unmarked", "test_b.py::test_unmarked_again")]
    assert all(services[t] == ["greeter"] for t in marked)
    singles = ["test_b.py::test_each[1]", "test_b.py::test_each[2]", "test_c.py::test_one", "test_c.py::test_two"]
    assert len({runs[t] for t in singles}) == 4
    assert len(set(runs.values())) == 1 + 1 + 1 + 4


def test_reuse_attaches_to_a_running_environment_and_leaves_it_running(inner: Inner) -> None:
    env = envkit.up(HELLO)
    try:
        inner.pytester.makepyfile(test_a=TWO_TESTS)
        result = inner.run(f"--envkit-reuse={env.run_id}", "-v", blueprint=None)
        result.assert_outcomes(passed=2)
        assert set(inner.runs().values()) == {env.run_id}
        result.stdout.fnmatch_lines([f"*run {env.run_id}: reuse, session scope, reuse in *s, left running*"])
        assert inner.resources([env.run_id]), "the reused run was removed"
        with urllib.request.urlopen(env.outputs["HELLO_URL"] + "/health", timeout=5) as response:
            assert response.status == 200
    finally:
        env.down()
    assert inner.resources([env.run_id]) == []


def test_a_marker_with_a_scope_it_cannot_have_is_a_collection_error(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a="""
        import pytest

        @pytest.mark.envkit("somewhere", scope="session")
        def test_one(envkit_env):
            pass
    """)
    result = inner.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_a.py::test_one: @pytest.mark.envkit: scope 'session': use one of module, class, *"])


def test_a_test_without_any_blueprint_gets_a_clear_error(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a=TWO_TESTS)
    result = inner.run(blueprint=None)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*envkit_env needs a blueprint: pass --envkit-blueprint PATH*"])


def test_a_suite_that_does_not_use_envkit_is_left_alone(inner: Inner) -> None:
    inner.pytester.makepyfile(test_a="def test_plain():\n    assert True\n")
    result = inner.run("-v", blueprint=None)
    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    assert "envkit:" not in output  # no report header
    assert not [line for line in output.splitlines() if line.strip("= ") == "envkit"]  # no summary section
