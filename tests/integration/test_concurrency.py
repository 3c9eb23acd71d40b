"""Many at once on one engine with default daemon settings: networks from envkit's own pool (past the
31 networks Docker's default pools hold), never on a range another network holds; one name, one
winner; eight `envkit run`s of the shop side by side, each seeing only its own data."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import envkit
from envkit import labels as L
from envkit.backends import Backend
from envkit.backends.base import NetworkSpec
from envkit.backends.docker import DockerBackend
from envkit.backends.subnets import DEFAULT_POOL
from envkit.errors import EngineError

from .conftest import ROOT, TEST_BLUEPRINTS, envkit_cli, resources_of

PAIR = str(TEST_BLUEPRINTS / "two-networks")
ENVKIT = str(Path(sys.executable).with_name("envkit"))
DOCKER_DEFAULT_NETWORKS = 31  # 172.17-31.0.0/16 and 192.168.0.0/16 in /20s: the 16th shop fails without a pool


def docker_api(backend: Backend) -> Any:
    assert isinstance(backend, DockerBackend)
    return backend.api


def subnets_of_runs(backend: Backend, runs: list[str]) -> dict[str, ipaddress.IPv4Network]:
    """Network name -> its subnet, for every network of these runs."""
    api, found = docker_api(backend), {}
    for run in runs:
        for row in api.networks(filters={"label": f"{L.RUN}={run}"}):
            (config,) = api.inspect_network(row["Id"])["IPAM"]["Config"]
            found[row["Name"]] = ipaddress.ip_network(config["Subnet"])
    return found


def foreign_subnets(backend: Backend) -> list[ipaddress.IPv4Network]:
    """Ranges of networks envkit did not make."""
    out = []
    for row in docker_api(backend).networks():
        if (row.get("Labels") or {}).get(L.MANAGED) != "true":
            out += [ipaddress.ip_network(c["Subnet"]) for c in (row.get("IPAM") or {}).get("Config") or []
                    if "." in str(c.get("Subnet", ""))]
    return out


def spawn_all(commands: list[list[str]], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(c, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **(env or {})}) for c in commands]
    results = []
    for c, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return results


@pytest.fixture
def foreign_network(backend: Backend) -> Iterator[Any]:
    """Make a network envkit did not create, on a given subnet (removed afterwards)."""
    api, made = docker_api(backend), []

    def make(name: str, subnet: str) -> None:
        import docker.types

        pool = docker.types.IPAMPool(subnet=subnet)
        made.append(api.create_network(name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]))["Id"])

    yield make
    for ident in made:
        api.remove_network(ident)


def test_sixteen_environments_at_once_get_their_own_subnets_past_dockers_default_pools(backend: Backend) -> None:
    runs = [f"it-many-{i}" for i in range(16)]  # the 16th shop (32 networks) fails without a pool
    try:
        # Without the owner's watchdog (a second interpreter per `up`; the runs are handed over anyway): half
        # the CPU on a small machine, and the address pool is what this test is about.
        results = spawn_all([[ENVKIT, "up", PAIR, "--name", r] for r in runs], env={"ENVKIT_REAPER": "0"})
        failed = [(r.args[-1], r.stderr[-400:]) for r in results if r.returncode != 0]
        assert not failed
        subnets = subnets_of_runs(backend, runs)
        assert len(subnets) == 32 > DOCKER_DEFAULT_NETWORKS - 1  # the default bridge holds one of them
        values = sorted(subnets.values())
        assert all(n.prefixlen == 24 and n.subnet_of(ipaddress.ip_network(DEFAULT_POOL)) for n in values)
        assert all(not a.overlaps(b) for a, b in itertools.pairwise(values))  # sorted: neighbours
        assert not any(n.overlaps(f) for n in values for f in foreign_subnets(backend))
    finally:
        down = envkit_cli("down", *[r for r in runs if resources_of(backend, r)])
        assert down.returncode in (0, 2), down.stderr  # 2: nothing was up
    assert all(resources_of(backend, r) == [] for r in runs)


def test_a_network_envkit_did_not_make_is_never_overlapped_and_a_full_pool_says_so(
        backend: Backend, foreign_network: Any) -> None:
    pool = {"ENVKIT_SUBNET_POOL": "10.221.12.0/22"}  # four /24s
    foreign_network("it-foreign-a", "10.221.13.0/24")
    try:
        first = envkit_cli("up", PAIR, "--name", "it-pool-1", env=pool)
        assert first.returncode == 0, first.stderr
        mine = set(subnets_of_runs(backend, ["it-pool-1"]).values())
        assert mine <= {ipaddress.ip_network(f"10.221.{n}.0/24") for n in (12, 14, 15)} and len(mine) == 2
        second = envkit_cli("up", PAIR, "--name", "it-pool-2", env=pool)  # needs two, one is left
        assert second.returncode == 5, second.stderr
        assert "no free /24 subnet left in ENVKIT_SUBNET_POOL (10.221.12.0/22: 4 of 4 in use)" in second.stderr
        assert "Traceback" not in second.stderr
        assert resources_of(backend, "it-pool-2") == []  # rolled back
    finally:
        envkit_cli("down", "it-pool-1")
    assert resources_of(backend, "it-pool-1") == []


def test_a_bad_pool_setting_stops_up_with_its_name_but_never_ls_or_down(backend: Backend) -> None:
    bad = {"ENVKIT_SUBNET_POOL": "10.208.0.0/33"}
    up = envkit_cli("up", PAIR, "--name", "it-bad-pool", env=bad)
    assert up.returncode == 2, up.stderr
    assert "error: ENVKIT_SUBNET_POOL: '10.208.0.0/33' is not an IPv4 network like 10.208.0.0/12" in up.stderr
    assert "Traceback" not in up.stderr and resources_of(backend, "it-bad-pool") == []
    assert envkit_cli("ls", env=bad).returncode == 0


class StaleListing(DockerBackend):
    """Sees no networks when it chooses: as if every other one had been made at the same moment."""

    def _taken_subnets(self) -> list[ipaddress.IPv4Network]:
        return []


def test_a_subnet_taken_at_the_same_moment_is_retried(backend: Backend, foreign_network: Any) -> None:
    stale = StaleListing({**os.environ, "ENVKIT_SUBNET_POOL": "10.221.20.0/22"})
    for n in (20, 21, 23):
        foreign_network(f"it-foreign-{n}", f"10.221.{n}.0/24")
    labels = ((L.MANAGED, "true"), (L.RUN, "it-stale"))
    try:
        made = stale.create_network(NetworkSpec("envkit-it-stale-a", labels))
        (config,) = stale.api.inspect_network(made)["IPAM"]["Config"]
        assert config == {"Subnet": "10.221.22.0/24", "Gateway": "10.221.22.1"}
        with pytest.raises(EngineError, match=r"no free /24 subnet left .* \(10.221.20.0/22: 4 of 4 in use\)"):
            stale.create_network(NetworkSpec("envkit-it-stale-b", labels))
    finally:
        for r in stale.list_resources({L.RUN: "it-stale"}):
            stale.remove_network(r.id)
        stale.close()


def test_up_with_one_name_twice_at_once_has_one_winner_left_untouched(backend: Backend) -> None:
    try:
        a, b = spawn_all([[ENVKIT, "up", PAIR, "--name", "it-race", "--json"]] * 2)
        winner, loser = (a, b) if a.returncode == 0 else (b, a)
        assert winner.returncode == 0, winner.stderr
        assert loser.returncode == 2, loser.stderr
        assert "error: run name 'it-race' is in use: " in loser.stderr and "Traceback" not in loser.stderr
        doc = json.loads(winner.stdout)
        env = envkit.attach("it-race")
        assert [s.ready for s in env.status()] == ["ready"] and env.outputs == {"RUN_ID": "it-race"}
        owners = {r.labels[L.OWNER] for r in backend.list_resources({L.RUN: "it-race"})}
        assert len(owners) == 1 and sorted(resources_of(backend, "it-race")) == [
            "container envkit-it-race-idle-1", "network envkit-it-race-back", "network envkit-it-race-front"]
        assert doc["run"] == "it-race"
    finally:
        envkit_cli("down", "it-race")
    assert resources_of(backend, "it-race") == []


# Runs as each `envkit run`'s command: writes a row through the API, reads it back through the database,
# sees no one else's, and says where its services were (ports, subnets). It waits until all eight are
# up, so the eight environments certainly live side by side.
CHECK = textwrap.dedent("""
    import json, os, sys, time, urllib.request
    import docker, psycopg
    run, api, together = os.environ["ENVKIT_RUN"], os.environ["API_URL"], sys.argv[1]
    open(os.path.join(together, run), "w").close()
    deadline = time.monotonic() + 300
    while len(os.listdir(together)) < int(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.2)
    email = f"{run}@isolation.test"  # the shop's seed data has customers of its own: ours are told apart
    body = json.dumps({"email": email, "amount_cents": 1200}).encode()
    req = urllib.request.Request(api + "/orders", body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201, resp.status
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        emails = [r[0] for r in conn.execute("SELECT email FROM customers WHERE email LIKE '%@isolation.test'")]
    assert emails == [email], emails
    with urllib.request.urlopen(api + "/orders", timeout=30) as resp:
        assert [o["email"] for o in json.load(resp) if o["email"].endswith("@isolation.test")] == [email]
    client = docker.from_env()
    nets = client.api.networks(filters={"label": "io.envkit.run=" + run})
    subnets = [client.api.inspect_network(n["Id"])["IPAM"]["Config"][0]["Subnet"] for n in nets]
    doc = json.load(open(os.environ["ENVKIT_OUTPUTS_FILE"]))
    ports = [r["ports"] for s in doc["services"].values() for r in s["replicas"]]
    print("CHECK " + json.dumps({"run": run, "subnets": subnets, "ports": ports}))
""")


def test_eight_runs_of_the_shop_at_once_each_see_only_their_own_data(backend: Backend, tmp_path: Path) -> None:
    together = tmp_path / "together"
    together.mkdir()
    mark = secrets.token_hex(2)  # a name an earlier, engine-damaged leftover cannot hold
    runs = [f"it-eight-{mark}-{i}" for i in range(8)]
    results = spawn_all([[ENVKIT, "run", str(ROOT / "blueprints" / "shop"), "--name", r, "--",
                          sys.executable, "-c", CHECK, str(together), "8"] for r in runs])
    assert [r.returncode for r in results] == [0] * 8, [r.stderr[-600:] for r in results if r.returncode]
    reports = [json.loads(next(line for line in r.stdout.splitlines() if line.startswith("CHECK "))[6:])
               for r in results]
    assert sorted(x["run"] for x in reports) == sorted(runs)
    subnets = [s for x in reports for s in x["subnets"]]
    assert len(subnets) == len(set(subnets)) == 16
    host_ports = [p["port"] for x in reports for replica in x["ports"] for p in replica.values()]
    assert len(host_ports) == len(set(host_ports)) == 8 * 4  # db, cache, payments, api: no port twice
    assert all(resources_of(backend, r) == [] for r in runs)


@pytest.mark.slow
def test_sixty_four_environments_live_side_by_side(backend: Backend) -> None:
    """128 networks on one engine with default daemon settings (four times what Docker's pools hold)."""
    names = [f"it-64-{i}" for i in range(64)]
    envs: list[envkit.Environment] = []
    errors: list[BaseException] = []

    def up(name: str) -> None:
        try:
            envs.append(envkit.up(PAIR, name=name, backend=backend))
        except BaseException as exc:
            errors.append(exc)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(up, names))
        assert not errors, errors[:3]
        assert len({r.run_id for r in envkit.ls(backend=backend)} & set(names)) == 64
        subnets = sorted(subnets_of_runs(backend, names).values())
        assert len(subnets) == 128 and all(not a.overlaps(b) for a, b in itertools.pairwise(subnets))
    finally:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda e: e.down(), envs))
    assert all(resources_of(backend, n) == [] for n in names)
