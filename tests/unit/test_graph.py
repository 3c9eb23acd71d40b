"""``envkit graph``: the topology read from the model, written as Mermaid and DOT; SVG when Graphviz is here."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from envkit.blueprint import load
from envkit.cli import main
from envkit.graph import Edge, to_dot, to_mermaid, topology

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "blueprints" / "shop"
HAS_DOT = shutil.which("dot") is not None


def test_the_shop_topology() -> None:
    t = topology(load(SHOP, {}))
    kinds = {n.name: n.kind for n in t.nodes}
    assert kinds == {"db": "service", "cache": "service", "payments": "stub", "api": "service", "migrate": "job",
                     "worker": "service", "edge": "network", "backend": "network"}
    deps = {(e.source, e.target): e.label for e in t.edges if e.kind == "depends"}
    assert deps == {("s_api", "s_db"): "ready", ("s_api", "s_cache"): "ready", ("s_api", "s_payments"): "ready",
                    ("s_api", "s_migrate"): "completed",  # `ready` on a job means it has completed
                    ("s_migrate", "s_db"): "ready", ("s_worker", "s_migrate"): "completed",
                    ("s_worker", "s_cache"): "ready"}
    assert Edge("s_api", "n_edge", "network") in t.edges and Edge("s_api", "n_backend", "network") in t.edges
    api = next(n for n in t.nodes if n.name == "api")
    assert api.lines == ("build app", "8080 → 127.0.0.1:ephemeral")


def test_mermaid_text(tmp_path: Path) -> None:
    (tmp_path / "blueprint.yaml").write_text(textwrap.dedent("""
        name: tiny
        networks: {inner: {internal: true}}
        volumes: {data: {}}
        services:
          db:
            image: "pg:16"
            networks: {inner: {aliases: [database]}}
            volumes: ["data:/var/lib/db:ro"]
            ports: ["127.0.0.1:15432:5432", 53/udp]
          my-app:
            image: app:1
            replicas: 2
            networks: [inner]
            depends_on: {db: started}
        """), encoding="utf-8")
    text = to_mermaid(topology(load(tmp_path, {})))
    assert text == textwrap.dedent("""\
        flowchart LR
          %% envkit blueprint 'tiny'
          s_db("<b>db</b><br/>image pg:16<br/>5432 → 127.0.0.1:15432<br/>53/udp → 127.0.0.1:ephemeral")
          s_my_app("<b>my-app</b><br/>image app:1<br/>2 replicas")
          n_inner(["<b>inner</b><br/>internal network"])
          v_data[("<b>data</b><br/>volume")]
          s_my_app -->|started| s_db
          s_db -.-|database| n_inner
          s_my_app -.- n_inner
          s_db ---|/var/lib/db (ro)| v_data
          classDef service fill:#e8f1fb,stroke:#3572b0,color:#0b2540
          classDef network fill:#e9f7ec,stroke:#2f855a,color:#123d24
          classDef volume fill:#f5f5f5,stroke:#718096,color:#1a202c
          class s_db,s_my_app service
          class n_inner network
          class v_data volume
        """)


def test_unknown_kinds_are_drawn_generically_and_ids_stay_unique() -> None:
    bp = load(SHOP, {})
    services = dict(bp.services)
    services["payments"] = dataclasses.replace(services["payments"], kind="stub")  # type: ignore[arg-type]
    services["cache"] = dataclasses.replace(services["cache"], kind="sidecar")  # type: ignore[arg-type]
    t = topology(dataclasses.replace(bp, services=services))
    mermaid, dot = to_mermaid(t), to_dot(t)
    assert 's_payments{{"<b>payments</b><br/>stub' in mermaid and 's_cache[["<b>cache</b><br/>sidecar' in mermaid
    assert "class s_cache other" in mermaid
    assert "shape=hexagon" in dot and "shape=box3d" in dot
    from envkit.graph import _ids
    assert _ids("s", ["a-b", "a_b", "a.b"], set()) == {"a-b": "s_a_b", "a_b": "s_a_b_2", "a.b": "s_a_b_3"}


def test_labels_are_escaped_in_both_formats() -> None:
    from envkit.graph import Node, Topology
    t = Topology('x"y', (Node("s_a", "service", "a", ('say "hi" <now> | #1', "back\\slash")),), ())
    assert 's_a("<b>a</b><br/>say #quot;hi#quot; #lt;now#gt; #124; #35;1<br/>back\\slash")' in to_mermaid(t)
    assert 'digraph "x\\"y" {' in to_dot(t) and 'label="a\\nsay \\"hi\\" <now> | #1\\nback\\\\slash"' in to_dot(t)


def test_only_limits_the_picture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(SHOP), "--only", "worker"]) == 0
    out = capsys.readouterr().out
    assert "s_worker" in out and "s_cache" in out and "s_db" in out and "s_api" not in out and "n_edge" not in out
    assert main(["graph", str(SHOP), "--only", "nope"]) == 2


def test_dot_text_from_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(SHOP), "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "shop" {') and 's_api -> s_migrate [color="#3572b0", label="completed"];' in out


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz (dot) is not installed")
def test_svg_is_drawn_by_graphviz(tmp_path: Path) -> None:
    assert main(["graph", str(SHOP), "--format", "svg", "-o", str(tmp_path / "shop.svg")]) == 0
    svg = (tmp_path / "shop.svg").read_text()
    assert "<svg" in svg and ">api</text>" in svg and ">backend</text>" in svg


def test_without_graphviz_a_picture_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["graph", str(SHOP), "--format", "svg"]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_the_readme_shows_the_current_picture_of_the_shop() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == to_mermaid(topology(load(SHOP, {}))), "README's graph is stale: envkit graph blueprints/shop"
