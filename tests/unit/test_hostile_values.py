"""Values that used to crash the loader, the planner or the engine call end in a well-formed envkit error:
overflowing sizes, infinite durations, huge CPU counts, names with a trailing newline, odd digits; and build
contexts too large or unreadable to hash (a context of ``/``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api, images
from envkit.blueprint import Blueprint
from envkit.blueprint.model import Build
from envkit.blueprint.readers import parse_duration, parse_size
from envkit.errors import BlueprintError

LoadText = Callable[..., Blueprint]


@pytest.mark.parametrize(("body", "message"), [
    ('memory: "1' + "0" * 400 + 'm"', "expected a size like 256m or 1g"),
    ("memory: 1k", "expected a memory limit from 6m to 1024t, got '1k'"),
    ("memory: 99999999t", "expected a memory limit from 6m to 1024t"),
    ("stop_grace_period: .inf", "expected a duration like 30s, 500ms or 2m, got inf"),
    ("stop_grace_period: 1" + "0" * 400 + "h", "expected a duration like 30s"),
    ("stop_grace_period: 25h", "expected a duration of at most 24h, got '25h'"),
    ("ready: {tcp: 80, timeout: .nan}", "expected a duration like 30s"),
    ("cpus: 1e300", "expected a number of CPUs from 0.01 to 1024, got '1e300'"),
    ("cpus: 1.0e+300", "expected a number of CPUs from 0.01 to 1024, got 1e+300"),
    ("cpus: '1e999'", "expected a number of CPUs from 0.01 to 1024"),
    ("cpus: .inf", "expected a number of CPUs"),
    ('replicas: "²"', "expected a replica count (1..64), got '²'"),
    ('ports: ["²"]', "invalid port '²'"),
    ("ports: [99999]", "expected a container port (1..65535), got 99999"),
    ('ports: ["1.2.3.4.5::80"]', "expected an IP address such as 127.0.0.1, got '1.2.3.4.5'"),
    ("ports: [{container: 80, host_ip: localhost}]", "expected an IP address such as 127.0.0.1, got 'localhost'"),
    ("cap_add: [NET_ADMNI]", "unknown capability 'NET_ADMNI' (did you mean 'NET_ADMIN'?)"),
    ('environment: {"A\\n": x}', "invalid environment variable name 'A\\n'"),
])
def test_a_hostile_value_is_a_problem_at_its_key(load_text: LoadText, body: str, message: str) -> None:
    with pytest.raises(BlueprintError) as caught:
        load_text(f"services:\n  svc:\n    image: x\n    {body}\n")
    (problem,) = caught.value.problems
    assert problem.line >= 4 and problem.path.startswith("services.svc.") and message in problem.message


@pytest.mark.parametrize("text", [
    'services:\n  "db\\n": {image: x}\n',
    'name: "shop\\n"\nservices: {db: {image: x}}\n',
    'networks: {"n\\n": {}}\nservices: {db: {image: x}}\n',
    'services: {db: {image: x}}\noutputs: {"URL\\n": x}\n',
])
def test_a_name_with_a_trailing_newline_is_refused_and_its_path_stays_on_one_line(load_text: LoadText,
                                                                                   text: str) -> None:
    with pytest.raises(BlueprintError) as caught:
        load_text(text)
    assert all("\n" not in p.path and "\n" not in p.message for p in caught.value.problems)
    assert "invalid" in str(caught.value) or "must be usable" in str(caught.value)


def test_the_limits_themselves_are_fine(load_text: LoadText) -> None:
    svc = load_text("services:\n  svc: {image: x, memory: 6m, cpus: 0.01, stop_grace_period: 24h}\n").services["svc"]
    assert (svc.memory, svc.cpus, svc.stop_grace_period) == (6 * 1024**2, 0.01, 86400.0)
    assert parse_size("1" + "0" * 400) is None and parse_size("1.5g") == 1610612736
    assert parse_duration(10**400) is None and parse_duration("1m30s") == 90.0


def test_plan_takes_every_valid_model(load_text: LoadText) -> None:
    bp = load_text("services:\n  svc: {image: x, stop_grace_period: 24h, cpus: 1024, memory: 1024t}\n")
    assert "create:svc-1" in api.plan(bp).text()


# -- build contexts ------------------------------------------------------------------------------
def test_a_context_too_large_is_a_blueprint_error_naming_the_service(load_text: LoadText,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"app/Dockerfile": "FROM x\n", **{f"app/f{i}": "" for i in range(5)}}
    bp = load_text("services:\n  svc:\n    build: ./app\n", files)
    monkeypatch.setattr(images, "MAX_FILES", 3)
    with pytest.raises(BlueprintError) as caught:
        api.plan(bp)
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (3, "services.svc.build")
    assert "is too large (more than 3 files or 2 GiB)" in problem.message and ".dockerignore" in problem.message


def test_the_root_folder_as_a_context_stops_early(monkeypatch: pytest.MonkeyPatch) -> None:
    walked = []
    real_walk = os.walk

    def counting(top: str, **kw: object) -> object:
        for item in real_walk(top, **kw):  # type: ignore[call-overload]
            walked.append(item)
            yield item

    monkeypatch.setattr(images.os, "walk", counting)
    with pytest.raises(images.ContextError, match="build context / is too large"):
        images.context_digest(Build(context=Path("/")))
    assert len(walked) < 20_000  # it did not walk the whole disk


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "secret.key").write_text("k")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "secret.key":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(images.ContextError, match=r"cannot read .*secret.key: Permission denied"):
        images.context_digest(Build(context=tmp_path))


def test_an_unreadable_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path: object) -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(images.ContextError, match=r"cannot read .*locked: Permission denied"):
        images.context_digest(Build(context=tmp_path))


def test_links_and_fifos_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    os.mkfifo(tmp_path / "pipe")  # reading it would block forever
    (tmp_path / "kmsg").symlink_to("/proc/kmsg")  # so would following this one
    first = images.context_digest(Build(context=tmp_path))
    (tmp_path / "kmsg").unlink()
    (tmp_path / "kmsg").symlink_to("/elsewhere")
    assert images.context_digest(Build(context=tmp_path)) != first  # the link's text is what counts
