"""`envkit init --with postgres,redis` runs as written on the real engine: both answer, then nothing is left."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

import envkit
from envkit.backends import Backend
from envkit.cli import main
from tests.integration.conftest import resources_of

pytestmark = pytest.mark.integration


def test_postgres_and_redis_starter_comes_up_and_goes(tmp_path: Path, backend: Backend) -> None:
    assert main(["init", str(tmp_path / "starter"), "--with", "postgres,redis", "--name", "starter"]) == 0
    with envkit.up(tmp_path / "starter", name="init-starter-1", backend=backend) as env:
        with psycopg.connect(env.outputs["DATABASE_URL"], connect_timeout=5) as conn:
            assert conn.execute("select current_user, current_database()").fetchone() == ("app", "app")
        client = redis.Redis.from_url(env.outputs["REDIS_URL"], socket_timeout=5)
        assert client.ping() is True
        client.close()
        assert sorted(env.services) == ["cache", "db"]
    assert resources_of(backend, "init-starter-1") == []
