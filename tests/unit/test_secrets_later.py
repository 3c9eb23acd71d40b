"""Secrets in what later commands show: status, exec and logs of another process (values read back from the
containers, as attach reads them), a collected bundle, and an exported Compose file (references only)."""

from __future__ import annotations

import io
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import api
from envkit.backends.base import ExecResult
from envkit.backends.fake import FakeBackend
from envkit.blueprint import Blueprint
from envkit.cli import main
from envkit.errors import EngineError
from envkit.export import to_compose
from envkit.secrets import ScrubbedStream, Secret

from .test_secrets import BLUEPRINT, PASSWORD

LoadText = Callable[..., Blueprint]


@pytest.fixture
def other(load_text: LoadText) -> tuple[FakeBackend, api.Environment]:
    fake = FakeBackend(images={"postgres:16", "python:3"})
    api.up(load_text(BLUEPRINT, env={"DB_PASSWORD": PASSWORD}), name="sec-2", backend=fake).detach()
    return fake, api.attach("sec-2", backend=fake)  # another process: labels and containers only


def test_another_process_finds_the_secret_values_and_scrubs_with_them(other: tuple[FakeBackend, api.Environment]
                                                                      ) -> None:
    fake, env = other
    assert {s.value for s in env.hidden()} == {PASSWORD, "tok-123456"}
    assert env.scrub(f"login with {PASSWORD} and tok-123456") == "login with **** and ****"
    # A probe whose answer quotes the password: status shows it masked.
    fake.exec_results["db"] = ExecResult(2, f'psql: error: connection to "postgresql://app:{PASSWORD}@db" failed')
    [row] = [r for r in env.status() if r.service == "db"]
    assert PASSWORD not in row.ready and "postgresql://app:****@db" in row.ready
    api.down(["sec-2"], backend=fake)


def test_errors_of_later_calls_are_scrubbed(other: tuple[FakeBackend, api.Environment],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake, env = other

    def refuse(container_id: str, command: tuple[str, ...], *args: object, **kwargs: object) -> ExecResult:
        raise EngineError(f"exec {' '.join(command)}: OCI runtime exec failed: exec: {command[0]!r}: not found")

    monkeypatch.setattr(fake, "exec", refuse)
    with pytest.raises(EngineError) as caught:
        env.exec("db", [f"psql postgresql://app:{PASSWORD}@db/app"])
    assert PASSWORD not in str(caught.value) and "postgresql://app:****@db/app" in str(caught.value)
    api.down(["sec-2"], backend=fake)


def test_logs_and_a_collected_bundle_of_another_process_hide_the_secret(
        other: tuple[FakeBackend, api.Environment], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = other
    for c in fake.containers.values():
        fake.emit(c.id, f"connecting with {PASSWORD} (token tok-123456)")
    assert main(["logs", "sec-2"], backend=fake) == 0
    shown = capsys.readouterr().out
    assert "connecting with **** (token ****)" in shown and PASSWORD not in shown
    assert main(["collect", "sec-2", str(tmp_path / "bundle")], backend=fake) == 0
    files = [p for p in (tmp_path / "bundle").rglob("*") if p.is_file()]
    assert files and not [p for p in files if PASSWORD in p.read_text() or "tok-123456" in p.read_text()]
    api.down(["sec-2"], backend=fake)


def test_a_terminal_stream_masks_a_secret_split_between_writes() -> None:
    target = io.BytesIO()
    stream = ScrubbedStream(target, [Secret("PW", PASSWORD)])
    for chunk in (b"pw=s3c", b"r/et@", b"x; again s3cr/et@x\n", b"ends with s3"):
        stream.write(chunk)
    assert target.getvalue() == b"pw=****; again ****\nends with "  # "s3" may begin a secret: held back
    stream.close()
    assert target.getvalue().endswith(b"ends with s3")


def test_an_exported_compose_file_refers_to_secrets_and_the_cli_writes_them_apart(
        load_text: LoadText, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bp = load_text(BLUEPRINT, env={"DB_PASSWORD": PASSWORD})
    result = to_compose(bp, {})
    text = result.text()
    assert PASSWORD not in text and "tok-123456" not in text
    assert "POSTGRES_PASSWORD: ${DB_PASSWORD}" in text and "TOKEN: ${DB_TOKEN}" in text
    assert "postgresql://app:${DB_PASSWORD}@db:5432/app" in text
    assert result.secrets == {"DB_PASSWORD": PASSWORD, "DB_TOKEN": "tok-123456"}
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "blueprint.yaml").write_text("name: sec\n" + BLUEPRINT.replace("\n    ", "\n"))
    out = tmp_path / "compose.yaml"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DB_PASSWORD", PASSWORD)
        assert main(["export", str(tmp_path / "exported"), "-o", str(out)]) == 0
    written = tmp_path / "compose.secrets.env"
    assert PASSWORD not in out.read_text() and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == f"DB_PASSWORD={PASSWORD}\nDB_TOKEN=tok-123456\n"
    assert "secret values are not in" in capsys.readouterr().err
