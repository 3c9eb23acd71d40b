"""Compose and Testcontainers habits on the command line (issue 15), on the fake engine: env files read
and written, idempotent down, dead services named, Compose keys explained, busy ports, mappings."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

import pytest

import envkit
from envkit import labels as L
from envkit.backends import _docker_wire as wire
from envkit.backends.fake import FakeBackend
from envkit.cli import main
from envkit.cli.envfiles import MARKER
from envkit.errors import BlueprintError, BuildFailed, ServiceFailed

BLUEPRINT = """
name: demo
services:
  web:
    image: nginx:${TAG:-1}
    ports: [80]
outputs:
  URL: http://${services.web.host}:${services.web.ports.80}
  TAG_USED: ${TAG:-1}
"""


@pytest.fixture
def bp(tmp_path: Path) -> Path:
    folder = tmp_path / "bp"
    folder.mkdir()
    (folder / "blueprint.yaml").write_text(BLUEPRINT)
    return folder


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images={"nginx:1", "nginx:2", "nginx:3"})


def resources(fake: FakeBackend, run_id: str) -> list[str]:
    return sorted(r.name for r in fake.list_resources({L.MANAGED: "true", L.RUN: run_id}))


# -- --env-file reads, --write-env writes -----------------------------------------------------------------
def test_env_file_reads_variables_and_never_writes(bp: Path, tmp_path: Path, fake: FakeBackend,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAG", raising=False)
    user_env = tmp_path / "vars.env"
    user_env.write_text("TAG=2\n")
    assert main(["up", str(bp), "--name", "e1", "--env-file", str(user_env)], backend=fake) == 0
    assert "TAG_USED  2" in capsys.readouterr().out
    assert user_env.read_text() == "TAG=2\n"  # read, not overwritten
    assert main(["outputs", "e1"], backend=fake) == 0
    assert "TAG_USED=2\n" in capsys.readouterr().out
    main(["down", "e1"], backend=fake)


def test_the_env_beside_the_blueprint_is_read_and_the_process_env_wins(bp: Path, tmp_path: Path, fake: FakeBackend,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAG", raising=False)
    (bp / ".env").write_text("TAG=2\n")
    assert main(["plan", "--offline", str(bp), "--name", "p"]) == 0
    assert "nginx:2" in capsys.readouterr().out
    later = tmp_path / "later.env"
    later.write_text("TAG=3\n")
    first = tmp_path / "first.env"
    first.write_text("TAG=1\n")
    assert main(["plan", "--offline", str(bp), "--name", "p", "--env-file", str(first), "--env-file", str(later)]) == 0
    assert "nginx:3" in capsys.readouterr().out  # the later file wins; .env is replaced
    monkeypatch.setenv("TAG", "1")
    assert main(["plan", "--offline", str(bp), "--name", "p", "--env-file", str(later)]) == 0
    assert "nginx:1" in capsys.readouterr().out
    assert main(["validate", str(bp), "--env-file", str(later)]) == 0
    assert main(["export", str(bp), "--env-file", str(later)]) == 0
    assert "nginx:1" in capsys.readouterr().out


def test_a_missing_env_file_says_what_the_option_means_now(bp: Path, fake: FakeBackend,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(bp), "--env-file", str(bp / "out.env")], backend=fake) == 2
    assert "--write-env FILE" in capsys.readouterr().err
    assert fake.calls == []
    assert main(["outputs", "x", "--env-file", "o.env"], backend=fake) == 2
    assert "to write the outputs use --write-env FILE" in capsys.readouterr().err


def test_write_env_writes_0600_with_a_marker_and_refuses_a_users_file(bp: Path, tmp_path: Path, fake: FakeBackend,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.env"
    assert main(["up", str(bp), "--name", "w1", "--write-env", str(target)], backend=fake) == 0
    text = target.read_text()
    assert text.startswith(f"{MARKER} for run w1") and "URL=http://127.0.0.1:" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # envkit's own file is replaced; a file the user wrote is refused before anything is brought up
    assert main(["outputs", "w1", "--write-env", str(target)], backend=fake) == 0
    mine = tmp_path / ".env"
    mine.write_text("SECRET=keep-me\n")
    calls = len(fake.calls)
    assert main(["up", str(bp), "--name", "w2", "--write-env", str(mine)], backend=fake) == 2
    assert "the file exists and envkit did not write it" in capsys.readouterr().err
    assert len(fake.calls) == calls and resources(fake, "w2") == []
    assert main(["outputs", "w1", "--write-env", str(mine)], backend=fake) == 2
    assert mine.read_text() == "SECRET=keep-me\n"
    assert main(["outputs", "w1", "--write-env", str(mine), "--force"], backend=fake) == 0
    assert mine.read_text().startswith(MARKER) and stat.S_IMODE(mine.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.env.")]  # no temporary left
    main(["down", "w1"], backend=fake)


def test_a_written_env_file_names_its_run_so_a_shell_can_take_it_down(bp: Path, tmp_path: Path,
                                                                      fake: FakeBackend) -> None:
    # As `envkit run` and --github-output give ENVKIT_RUN: `set -a; . ./out.env; envkit down "$ENVKIT_RUN"`.
    target = tmp_path / "out.env"
    assert main(["up", str(bp), "--name", "w3", "--write-env", str(target)], backend=fake) == 0
    lines = target.read_text().splitlines()[1:]
    assert "ENVKIT_RUN=w3" in lines and lines == sorted(lines)  # one NAME=value line each, sorted by name
    assert main(["outputs", "w3", "--write-env", str(target)], backend=fake) == 0
    assert "ENVKIT_RUN=w3" in target.read_text().splitlines()
    run_id = dict(line.split("=", 1) for line in target.read_text().splitlines()[1:])["ENVKIT_RUN"]
    assert main(["down", run_id], backend=fake) == 0
    assert resources(fake, "w3") == []


def test_every_way_out_gives_envkit_run_the_run_id_over_an_output_of_that_name(
        tmp_path: Path, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "named"
    folder.mkdir()
    (folder / "blueprint.yaml").write_text(BLUEPRINT + "  ENVKIT_RUN: not-the-run\n")
    github, env_file = tmp_path / "github_output", tmp_path / "out.env"
    github.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(github))
    assert main(["up", str(folder), "--name", "g1", "--github-output", "--write-env", str(env_file)], backend=fake) == 0
    assert [line for line in github.read_text().splitlines() if line.startswith("ENVKIT_RUN=")] == ["ENVKIT_RUN=g1"]
    assert "ENVKIT_RUN=g1" in env_file.read_text().splitlines()


# -- down is idempotent --------------------------------------------------------------------------------------
def test_down_of_a_gone_run_is_fine_unless_strict(bp: Path, fake: FakeBackend,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(bp), "--name", "d1"], backend=fake) == 0
    capsys.readouterr()
    assert main(["down", "d1", "ghost"], backend=fake) == 0
    captured = capsys.readouterr()
    assert "no run ghost: nothing to remove" in captured.err and "removed 1 containers" in captured.out
    assert resources(fake, "d1") == []
    assert main(["down", "d1"], backend=fake) == 0
    assert main(["down", "--strict", "d1"], backend=fake) == 7


# -- a service that died ------------------------------------------------------------------------------------------
def test_a_dead_service_is_named_with_what_happened(bp: Path, fake: FakeBackend,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(bp), "--name", "x1"], backend=fake) == 0
    assert main(["status", "x1"], backend=fake) == 0
    capsys.readouterr()
    fake.kill_container("envkit-x1-web-1", "SIGKILL")
    assert main(["outputs", "x1"], backend=fake) == 6
    err = capsys.readouterr().err
    assert "service web: exited with code 137 at " in err and "UTC (killed by SIGKILL); its ports are gone; " \
           "see `envkit logs x1 web`" in err
    assert "publishes no port" not in err
    assert main(["exec", "x1", "web", "--", "true"], backend=fake) == 6
    err = capsys.readouterr().err
    assert "service web: exited with code 137" in err and "cannot run a command in it" in err
    assert fake.containers[next(iter(fake.containers))].id not in err
    assert main(["status", "x1"], backend=fake) == 6
    captured = capsys.readouterr()
    assert "failed: exited with code 137" in captured.out
    assert "service web (envkit-x1-web-1): failed: exited with code 137" in captured.err
    assert main(["status", "--json", "x1"], backend=fake) == 6
    main(["down", "x1"], backend=fake)


# -- Compose keys, busy ports, engine advice, durations, escapes -------------------------------------------------------------
def test_compose_keys_get_envkits_equivalent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nservices:\n  api:\n    image: x\n    restart: always\n    healthcheck: {test: [CMD, x]}\n"
                 "    env_file: .env\n    profiles: [dev]\n    container_name: api\n    comand: x\n")
    assert main(["validate", str(f)]) == 3
    err = capsys.readouterr().err
    assert "services.api.restart: unknown key 'restart' (a Compose key; not supported" in err
    assert "prestart" not in err
    assert "services.api.healthcheck: unknown key 'healthcheck' (a Compose key; use ready: healthcheck" in err
    assert "services.api.env_file: unknown key 'env_file' (a Compose key;" in err and "--env-file" in err
    assert "services.api.profiles: unknown key 'profiles' (a Compose key; not supported: choose services with " \
           "`envkit up --only SVC`" in err
    assert "allowed:" not in err
    assert "unknown key 'comand' (did you mean 'command'?)" in err


def test_every_hint_is_for_a_key_the_table_lacks() -> None:
    from envkit.blueprint import keys as K
    from envkit.blueprint.compose_hints import HINTS

    for title, hints in HINTS.items():
        assert title in K.TABLES
        assert not set(hints) & set(K.TABLES[title].names), title


def test_a_busy_pinned_port_is_named_with_the_way_out(tmp_path: Path, fake: FakeBackend,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blueprint.yaml").write_text("name: busy\nservices:\n  web:\n    image: nginx:1\n    ports: ['8080:80']\n")
    fake.busy_ports.add(("127.0.0.1", 8080))
    assert main(["up", str(tmp_path), "--name", "b1"], backend=fake) == 6
    err = capsys.readouterr().err
    assert "service web: cannot start: host port 127.0.0.1:8080 is already in use" in err
    assert "without a host part (`- 8080` rather than `- 8080:8080`" in err
    assert resources(fake, "b1") == []


def test_engine_advice_names_the_setup_script_only_inside_envkits_checkout(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outside = str(wire.unreachable("unix:///x.sock", FileNotFoundError(2, "No such file")))
    assert "setup.sh" not in outside and "sudo systemctl start docker" in outside and "DOCKER_HOST" in outside
    monkeypatch.chdir(Path(wire.__file__).parents[2])
    assert "`bash scripts/setup.sh`" in str(wire.unreachable("unix:///x.sock", FileNotFoundError(2, "No such file")))
    denied = str(wire.unreachable("unix:///x.sock", PermissionError(13, "Permission denied")))
    assert "docker group" in denied


def test_durations_and_escapes_read_well() -> None:
    from envkit.text import duration, strip_ansi

    assert [duration(s) for s in (0.0004, 0.25, 2.30595, 9.96, 30, 59.6, 150, 3720)] == [
        "0ms", "250ms", "2.3s", "10s", "30s", "1m", "2m30s", "1h2m"]
    assert strip_ansi("\x1b[31mred\x1b[0m \x1b]0;title\x07ok\r\n50%\r100%") == "red ok\n100%"
    failed = BuildFailed(["api"], "img", "\x1b[1mboom\x1b[0m", ["\x1b[32mstep 1\x1b[0m"])
    assert "\x1b" not in str(failed) and "boom" in str(failed) and "step 1" in str(failed)
    assert "\x1b" not in str(ServiceFailed("db", "x", ["\x1b[33mwarn\x1b[0m"]))


# -- a blueprint as a mapping ------------------------------------------------------------------------------------------
def test_up_takes_a_mapping(tmp_path: Path, fake: FakeBackend) -> None:
    (tmp_path / "seed.sql").write_text("select 1;\n")
    blueprint = {"name": "mapped", "services": {"web": {"image": "nginx:1", "ports": [80],
                                                         "volumes": [{"type": "bind", "source": "./seed.sql",
                                                                      "target": "/seed.sql", "read_only": True}]}},
                 "outputs": {"URL": "http://${services.web.host}:${services.web.ports.80}"}}
    with envkit.up(blueprint, backend=fake, directory=tmp_path) as env:
        assert env.outputs["URL"].startswith("http://127.0.0.1:")
        spec = fake.containers[env.info.replicas("web")[0].id].spec
        assert spec.mounts[0].source == str(tmp_path / "seed.sql")
    assert resources(fake, env.run_id) == []
    with pytest.raises(BlueprintError) as caught:
        envkit.up({"services": {"web": {"imag": "nginx:1"}}}, backend=fake)
    assert f"<mapping from {os.path.basename(__file__)}:" in str(caught.value)
    assert "services.web.imag: unknown key 'imag' (did you mean 'image'?)" in str(caught.value)


# -- exec: stdin, streamed output, exit codes, options before RUN --------------------------------------------------
def psql_like(command: tuple[str, ...], stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool) -> int:
    query = stdin.read()
    stdout.write(b"42\n" if query == b"select 42;\n" else b"")
    stderr.write(b"done\n")
    return 0 if query else 3


def test_exec_passes_a_pipe_streams_output_and_exits_with_the_code(bp: Path, fake: FakeBackend,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["up", str(bp), "--name", "i1"], backend=fake) == 0
    fake.exec_programs["web"] = psql_like
    read_end, write_end = os.pipe()
    os.write(write_end, b"select 42;\n")
    os.close(write_end)
    capsys.readouterr()
    with os.fdopen(read_end, "r") as piped:
        monkeypatch.setattr(sys, "stdin", piped)
        assert main(["exec", "i1", "web", "--", "psql", "-At"], backend=fake) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("42\n", "done\n")
    with open(os.devnull) as null:  # a stdin to ignore: the program reads nothing and exits 3
        monkeypatch.setattr(sys, "stdin", null)
        assert main(["exec", "--no-stdin", "i1", "web", "psql"], backend=fake) == 3
    assert main(["exec", "i1", "web", "-it", "sh"], backend=fake) == 2  # taken as envkit's -it, not a command
    assert "the input device is not a terminal" in capsys.readouterr().err
    fake.exec_programs["web"] = lambda command, *_: len(command)
    assert main(["exec", "i1", "web", "--replica", "1", "--no-stdin", "--", "a", "-i"], backend=fake) == 2
    assert main(["exec", "--no-stdin", "i1", "web", "-u", "root", "a", "b", "c"], backend=fake) == 3
    assert main(["exec", "i1", "web", "--replica", "2", "x"], backend=fake) == 2
    assert "service web has 1 replicas; no replica 2" in capsys.readouterr().err
    assert main(["exec", "-it", "i1", "web", "sh"], backend=fake) == 2
    assert "the input device is not a terminal" in capsys.readouterr().err
    main(["down", "i1"], backend=fake)


def test_exec_on_an_engine_without_streams(bp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from envkit.backends.base import Capability, ExecResult

    fake = FakeBackend(images={"nginx:1"}, capabilities=frozenset(Capability) - {Capability.INTERACTIVE_EXEC})
    assert main(["up", str(bp), "--name", "i2"], backend=fake) == 0
    fake.exec_results["web"] = ExecResult(4, "all at once\n")
    capsys.readouterr()
    assert main(["exec", "--no-stdin", "i2", "web", "--", "x"], backend=fake) == 4
    assert capsys.readouterr().out == "all at once\n"
    assert main(["exec", "-i", "i2", "web", "--", "x"], backend=fake) == 2
    assert "engine fake cannot run commands interactively" in capsys.readouterr().err
    main(["down", "i2"], backend=fake)


def test_the_compose_page_lists_every_hint() -> None:
    from envkit.blueprint.compose_hints import markdown

    page = (Path(__file__).parents[2] / "docs" / "coming-from-compose.md").read_text(encoding="utf-8")
    generated = page.split("<!-- generated from envkit/blueprint/compose_hints.py -->\n")[1].split("<!-- end")[0]
    assert generated == markdown(), "docs/coming-from-compose.md is stale: regenerate its table from markdown()"
