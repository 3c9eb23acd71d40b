"""A snapshot misses once a seed file is edited: a new key, the seeds run again, the data is the edit's.

The bundled tests/blueprints/good/snapshot is copied to tmp_path (the edit stays there); a TOKEN of this
test's own keeps its keys apart from any other run's, and every snapshot it made is removed (checked).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import envkit
from envkit import labels as L
from envkit import snapshots as S
from envkit.backends import Backend

from .conftest import TEST_BLUEPRINTS, resources_of


def facts(env: envkit.Environment) -> tuple[str, str, str]:
    """(snapshot key, the volume's rows, the row count the exec seed wrote into the filesystem)."""
    rows = env.exec("store", ["cat", "/data/rows.txt"])
    count = env.exec("store", ["cat", "/etc/row-count"])
    assert rows.exit_code == 0 and count.exit_code == 0, (rows.output, count.output)
    return env.info.replicas("store")[0].labels[L.SNAPSHOT], rows.output.strip(), count.output.strip()


def test_editing_one_seed_file_misses_and_seeds_the_edit(backend: Backend, tmp_path: Path) -> None:
    folder = tmp_path / "snapshot"
    shutil.copytree(TEST_BLUEPRINTS / "snapshot", folder)
    env_vars = {"TOKEN": secrets.token_hex(6)}
    def ours() -> set[str]:  # other processes make snapshots of other blueprints meanwhile
        return {r.labels[L.SNAPSHOT] for r in backend.list_resources({L.SNAPSHOT: None, L.BLUEPRINT: "snapstore"})}

    before = ours()
    made: set[str] = set()
    try:
        with envkit.up(folder, env=env_vars, backend=backend) as first:  # a miss: seeds, then captures
            key_a, rows_a, count_a = facts(first)
            run_a = first.run_id
        assert resources_of(backend, run_a) == [] and S.find(backend, key_a) is not None
        assert (rows_a, count_a) == ("alpha\nbeta", "2")

        (folder / "seed" / "rows.txt").write_text("alpha\nbeta\ngamma\n", encoding="utf-8")
        events: list[envkit.Event] = []
        with envkit.up(folder, env=env_vars, backend=backend, on_event=events.append) as second:
            key_b, rows_b, count_b = facts(second)
        assert key_b != key_a, "an edited seed file must give a new key"
        assert any(e.detail == "miss" for e in events) and not any(e.detail == "hit" for e in events)
        assert [e.action for e in events if e.kind == "step" and e.phase == "done" and e.action == "seed"] == ["seed"] * 2
        assert (rows_b, count_b) == ("alpha\nbeta\ngamma", "3")
        assert S.find(backend, key_b) is not None and S.find(backend, key_a) is not None  # the old one is untouched
    finally:
        made = ours() - before
        for key in made:
            S.remove(backend, key)
    assert len(made) == 2
    assert not ours() & made
