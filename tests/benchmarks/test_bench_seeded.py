"""bench_seeded's topologies, without an engine: the shop with its db swapped for the initdb image, a
blueprint that loads, whose initdb.d holds the shop's own schema (and seeds), exported for Compose."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from envkit.blueprint import load
from envkit.export import to_compose
from envkit.images import image_tags

from .conftest import ROOT


@pytest.fixture(scope="module")
def seeded() -> ModuleType:
    spec = importlib.util.spec_from_file_location("envkit_bench_seeded", ROOT / "benchmarks" / "bench_seeded.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_schema_is_the_apps_own(seeded: ModuleType) -> None:
    sql = seeded.shop_schema()
    for table in ("products", "customers", "orders", "order_items"):
        assert f"CREATE TABLE IF NOT EXISTS {table} (" in sql
    assert sql.count(";\n") == 6 and "orders_customer_id_idx" in sql
    assert "psycopg2" not in sys.modules or getattr(sys.modules["psycopg2"], "__file__", None)  # the stub is gone


@pytest.mark.parametrize("with_seeds", [False, True])
def test_the_topology_loads_and_exports_its_initdb_mounts(seeded: ModuleType, tmp_path: Path, with_seeds: bool) -> None:
    folder = seeded.topology(tmp_path, "t", with_seeds)
    bp = load(folder, {})
    db = bp.services["db"]
    assert not db.seed and db.build is not None and db.build.context.name == "postgres-initdb"
    assert sorted(p.name for p in (folder / "initdb.d").iterdir()) == (
        ["00-schema.sql", "10-catalogue.sql", "20-orders.sql"] if with_seeds else ["00-schema.sql"])
    targets = {m.target for m in db.volumes}
    assert targets == ({"/docker-entrypoint-initdb.d", "/tmp/products.csv"} if with_seeds else {"/docker-entrypoint-initdb.d"})
    assert all(bp.services[s].ready.timeout == 600 for s in ("db", "cache", "api"))  # type: ignore[union-attr]
    text = to_compose(bp, image_tags(bp, tuple(bp.services))).text()
    assert "target: /docker-entrypoint-initdb.d" in text and "POSTGRES_USER: shop" in text
