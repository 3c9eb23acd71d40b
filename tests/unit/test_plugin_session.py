"""The plugin end to end on the fake engine: inner pytest sessions (pytester, in this process) whose
``envkit_backend`` is a FakeBackend, so scopes, marks, --envkit-keep / --envkit-reuse, failure logs and
the summary are checked without Docker. tests/plugin runs the same behaviours on the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import envkit
from envkit import labels as L
from envkit.api import Environment
from envkit.backends.fake import FakeBackend

BLUEPRINT = """
name: demo
services:
  web:
    image: nginx:1
outputs:
  GREETING: hello
"""
TWO_TESTS = """
def test_one(envkit_env, record):
    record(envkit_env)

def test_two(envkit_env, record):
    record(envkit_env)
"""


# The inner conftest overrides envkit_backend, as a user's would; the fake comes from the Engine plugin.
CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def envkit_backend(fake_engine):
    return fake_engine
"""


class Engine:
    """A plugin for the inner session: the fake engine (``fake_engine``), and ``record(env)``."""

    def __init__(self, fake: FakeBackend) -> None:
        self.fake = fake
        self.records: dict[str, tuple[str, tuple[str, ...]]] = {}  # test id -> (run, services)

    @pytest.fixture(scope="session")
    def fake_engine(self) -> FakeBackend:
        return self.fake

    @pytest.fixture
    def record(self, request: pytest.FixtureRequest) -> Any:
        def write(env: Environment) -> None:
            self.records[request.node.nodeid] = (env.run_id, env.services)
        return write

    def runs(self) -> dict[str, str]:
        return {test: run for test, (run, _) in self.records.items()}

    def left(self) -> list[str]:
        return sorted(f"{r.kind} {r.name}" for r in self.fake.list_resources({L.MANAGED: "true"}))


@pytest.fixture
def engine(pytester: pytest.Pytester) -> Engine:
    fake = FakeBackend(images={"nginx:1"})
    fake.log_text["web"] = "web says hello\n"
    for name, service in (("bp", "web"), ("other", "greeter")):
        pytester.path.joinpath(name).mkdir()
        pytester.path.joinpath(name, "blueprint.yaml").write_text(BLUEPRINT.replace("web:", f"{service}:"))
    pytester.makeconftest(CONFTEST)
    return Engine(fake)


def run(pytester: pytest.Pytester, engine: Engine, *args: str, blueprint: str | None = "bp") -> pytest.RunResult:
    options = [f"--envkit-blueprint={pytester.path / blueprint}"] if blueprint else []
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *options, *args, plugins=[engine])


def test_one_environment_for_the_session_removed_at_its_end(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=TWO_TESTS, test_b=TWO_TESTS)
    result = run(pytester, engine, "-v")
    result.assert_outcomes(passed=4)
    runs = engine.runs()
    assert len(runs) == 4 and len(set(runs.values())) == 1
    run_id = next(iter(runs.values()))
    result.stdout.fnmatch_lines([f"envkit: run {run_id}: * steps",  # -v shows the plan event ...
                                 f"run {run_id}: {pytester.path / 'bp'}, session scope, up in *s, removed"])
    assert engine.left() == []


def test_without_verbose_no_progress_and_no_summary(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=TWO_TESTS)
    result = run(pytester, engine)
    result.assert_outcomes(passed=2)
    assert "envkit: run" not in result.stdout.str()
    assert not [line for line in result.stdout.lines if line.strip("= ") == "envkit"]


def test_module_scope_one_environment_per_module(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=TWO_TESTS, test_b=TWO_TESTS)
    run(pytester, engine, "--envkit-scope=module").assert_outcomes(passed=4)
    runs = engine.runs()
    assert runs["test_a.py::test_one"] == runs["test_a.py::test_two"] != runs["test_b.py::test_one"]
    assert runs["test_b.py::test_one"] == runs["test_b.py::test_two"]
    assert engine.left() == []


def test_a_marked_class_gets_its_own_blueprint_and_the_session_keeps_one(pytester: pytest.Pytester,
                                                                          engine: Engine) -> None:
    pytester.makepyfile(test_a="""
        import pytest

        def test_before(envkit_env, record):
            record(envkit_env)

        @pytest.mark.envkit("other")
        class TestMarked:
            def test_one(self, envkit_env, record):
                record(envkit_env)

            def test_two(self, envkit_env, record):
                record(envkit_env)

        def test_after(envkit_env, record):
            record(envkit_env)
    """)
    run(pytester, engine).assert_outcomes(passed=4)
    runs = engine.runs()
    services = {test: s for test, (_, s) in engine.records.items()}
    assert runs["test_a.py::test_before"] == runs["test_a.py::test_after"]  # not brought up twice
    assert runs["test_a.py::TestMarked::test_one"] == runs["test_a.py::TestMarked::test_two"]
    assert runs["test_a.py::TestMarked::test_one"] != runs["test_a.py::test_before"]
    assert services["test_a.py::TestMarked::test_one"] == ("greeter",)
    assert services["test_a.py::test_before"] == ("web",)
    assert engine.left() == []


def test_keep_leaves_the_run_of_a_failing_test_and_says_how_to_remove_it(pytester: pytest.Pytester,
                                                                         engine: Engine) -> None:
    pytester.makepyfile(test_good="def test_ok(envkit_env, record):\n    record(envkit_env)\n",
                        test_bad="def test_broken(envkit_env, record):\n    record(envkit_env)\n    assert False\n")
    result = run(pytester, engine, "--envkit-keep", "--envkit-scope=module")
    result.assert_outcomes(passed=1, failed=1)
    runs = engine.runs()
    kept = runs["test_bad.py::test_broken"]
    result.stdout.fnmatch_lines([f"kept run {kept} after a failure; remove it with: envkit down {kept}"])
    assert engine.left() and all(f"envkit-{kept}-" in r for r in engine.left())
    envkit.down([kept], backend=engine.fake)
    assert engine.left() == []


def test_reuse_attaches_and_leaves_the_run_running(pytester: pytest.Pytester, engine: Engine) -> None:
    env = envkit.up(pytester.path / "bp", name="reused-1", backend=engine.fake)
    env.detach()
    pytester.makepyfile(test_a=TWO_TESTS)
    result = run(pytester, engine, "--envkit-reuse=reused-1", "-v", blueprint=None)
    result.assert_outcomes(passed=2)
    assert set(engine.runs().values()) == {"reused-1"}
    result.stdout.fnmatch_lines(["run reused-1: reuse, session scope, reuse in *s, left running"])
    assert engine.left()
    env.down()


@pytest.mark.parametrize("how", ["argument", "getfixturevalue"])
def test_a_failing_test_gets_its_services_logs(pytester: pytest.Pytester, engine: Engine, how: str) -> None:
    uses = ("def test_fails(envkit_env):\n" if how == "argument" else
            "def test_fails(request):\n    request.getfixturevalue('envkit_env')\n")
    pytester.makepyfile(test_a=uses + "    assert False, 'broken'\n")
    result = run(pytester, engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- envkit logs -*", "run demo-*, services' logs from *", "web | web says hello"])


def test_a_failing_test_without_the_fixture_gets_no_logs(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=TWO_TESTS + "\ndef test_plain():\n    assert False\n")
    result = run(pytester, engine)
    result.assert_outcomes(passed=2, failed=1)
    assert "envkit logs" not in result.stdout.str()


def test_a_test_without_any_blueprint_gets_a_clear_error(pytester: pytest.Pytester, engine: Engine) -> None:
    pytester.makepyfile(test_a=TWO_TESTS)
    result = run(pytester, engine, blueprint=None)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*envkit_env needs a blueprint: pass --envkit-blueprint PATH*"])
    assert engine.fake.calls == []  # it did not even ask the engine


def test_the_engine_option_reaches_connect(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # No conftest overriding envkit_backend: the plugin's own fixture connects to the option's engine.
    (tmp_path / "blueprint.yaml").write_text(BLUEPRINT)
    pytester.makepyfile(test_a="def test_one(envkit_env):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--envkit-blueprint={tmp_path}",
                                          "--envkit-engine=nosuch")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*envkit: *unknown engine 'nosuch' (known engines: docker*"])
    assert "During handling" not in result.stdout.str()


def test_a_failed_bring_up_is_told_once_per_test_not_twice(pytester: pytest.Pytester, engine: Engine) -> None:
    # pytest prints a failure's chained exception even with pytrace=False: raised while the EnvkitError was
    # handled, the message came twice ("During handling of the above exception, another exception occurred").
    engine.fake.exit_codes["web"] = 3
    pytester.makepyfile(test_a=TWO_TESTS)
    result = run(pytester, engine)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "During handling" not in out
    reason = next(line for line in result.outlines if line.startswith("envkit: ") and "exited with code 3" in line)
    assert result.outlines.count(reason) == 2, out  # once for each test
    assert engine.left() == []


@pytest.fixture
def needs_env_file(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Blueprint pw, whose output needs DB_PASSWORD, and ci.env beside the test folder, which sets it."""
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    pytester.path.joinpath("pw").mkdir()
    pytester.path.joinpath("pw", "blueprint.yaml").write_text(
        BLUEPRINT.replace("GREETING: hello", "GREETING: ${DB_PASSWORD:?set it in .env}"))
    pytester.path.joinpath("ci.env").write_text("DB_PASSWORD=from-ci\n")
    return pytester.path / "ci.env"


def test_env_files_give_the_blueprints_variables(pytester: pytest.Pytester, engine: Engine,
                                                 needs_env_file: Path) -> None:
    # `envkit import -o envkit/blueprint.yaml` leaves Compose's .env one folder up: `envkit up --env-file`
    # reads it there, and so must the plugin (it read only the .env beside the blueprint)
    pytester.makepyfile(test_a="def test_a(envkit_env):\n    assert envkit_env.outputs['GREETING'] == 'from-ci'\n")
    run(pytester, engine, f"--envkit-env-file={needs_env_file}", blueprint="pw").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nenvkit_env_file = ci.env\n")  # relative to the ini file, as envkit_blueprint
    run(pytester, engine, blueprint="pw").assert_outcomes(passed=1)
    result = run(pytester, engine, "--envkit-env-file=missing.env", blueprint="pw")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*missing.env*env file not found*"])
    assert engine.left() == []


def test_a_reused_run_gets_its_blueprint_loaded_with_the_env_files(pytester: pytest.Pytester, engine: Engine,
                                                                    needs_env_file: Path) -> None:
    # A reset of an attached run loads its blueprint again (its own, or to run dependants' seeds again):
    # from the run's path alone it would read only the .env beside it, not --envkit-env-file.
    env = envkit.up(pytester.path / "pw", name="reused-pw", backend=engine.fake, env_files=[needs_env_file])
    env.detach()
    pytester.makepyfile(test_a="def test_a(envkit_env):\n"
                               "    assert envkit_env.blueprint is not None\n"
                               "    assert dict(envkit_env.blueprint.outputs)['GREETING'] == 'from-ci'\n")
    result = run(pytester, engine, "--envkit-reuse=reused-pw", f"--envkit-env-file={needs_env_file}", blueprint=None)
    result.assert_outcomes(passed=1)
    env.down()
