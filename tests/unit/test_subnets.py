"""Subnets from envkit's own pool: the setting, the choice of a free one, overlaps retried (no engine)."""

from __future__ import annotations

import threading
from ipaddress import IPv4Network

import pytest

from envkit.backends.subnets import (
    DEFAULT_POOL,
    OVERLAP_ATTEMPTS,
    Allocator,
    SubnetPool,
    gateway,
    parse_routes,
    pool_from,
)
from envkit.errors import Conflict, EngineError, UsageError


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


# -- the setting -----------------------------------------------------------------------------------------
def test_the_default_pool_is_10_208_in_24s() -> None:
    pool = pool_from({})
    assert pool is not None and pool.ranges == (net(DEFAULT_POOL),) and pool.size == 24
    assert pool.capacity == 4096 and str(pool) == "10.208.0.0/12 in /24s"
    assert all(net("10.208.0.0/12").supernet_of(pool.subnet(i)) for i in (0, 1, 4095))
    assert pool.subnet(0) == net("10.208.0.0/24") and pool.subnet(4095) == net("10.223.255.0/24")


def test_several_ranges_and_a_size_can_be_set() -> None:
    pool = pool_from({"ENVKIT_SUBNET_POOL": " 10.99.0.0/24 , 192.168.200.0/23", "ENVKIT_SUBNET_SIZE": "/26"})
    assert pool is not None and pool.capacity == 4 + 8
    assert [str(pool.subnet(i)) for i in (0, 3, 4, 11)] == [
        "10.99.0.0/26", "10.99.0.192/26", "192.168.200.0/26", "192.168.201.192/26"]
    with pytest.raises(IndexError):
        pool.subnet(12)


def test_engine_leaves_the_choice_to_the_engine() -> None:
    assert pool_from({"ENVKIT_SUBNET_POOL": "engine"}) is None
    assert pool_from({"ENVKIT_SUBNET_POOL": "ENGINE"}) is None


@pytest.mark.parametrize(("env", "message"), [
    ({"ENVKIT_SUBNET_POOL": "10.208.0.0"}, "ENVKIT_SUBNET_POOL: 10.208.0.0/32 is smaller than one /24 network"),
    ({"ENVKIT_SUBNET_POOL": "10.208.0.1/12"}, "ENVKIT_SUBNET_POOL: '10.208.0.1/12' is not an IPv4 network like "
                                              "10.208.0.0/12 (10.208.0.1/12 has host bits set)"),
    ({"ENVKIT_SUBNET_POOL": "lots"}, "ENVKIT_SUBNET_POOL: 'lots' is not an IPv4 network like 10.208.0.0/12"),
    ({"ENVKIT_SUBNET_POOL": "fd00::/64"}, "ENVKIT_SUBNET_POOL: 'fd00::/64' is not an IPv4 network (IPv6"),
    ({"ENVKIT_SUBNET_POOL": "10.0.0.0/16,10.0.128.0/17"}, "ENVKIT_SUBNET_POOL: 10.0.128.0/17 overlaps 10.0.0.0/16"),
    ({"ENVKIT_SUBNET_SIZE": "30"}, "ENVKIT_SUBNET_SIZE: '30' is not a prefix length from 16 to 28"),
    ({"ENVKIT_SUBNET_SIZE": "big"}, "ENVKIT_SUBNET_SIZE: 'big' is not a prefix length from 16 to 28"),
    ({"ENVKIT_SUBNET_POOL": "10.1.0.0/25"}, "ENVKIT_SUBNET_POOL: 10.1.0.0/25 is smaller than one /24 network"),
])
def test_a_bad_setting_is_a_usage_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        pool_from(env)
    assert str(info.value).startswith(message)


# -- choosing ---------------------------------------------------------------------------------------------
SMALL = SubnetPool((net("10.50.0.0/22"),), 24)  # four candidates: 10.50.0-3.0/24


def test_a_choice_never_overlaps_what_is_taken_whoever_made_it() -> None:
    taken = [net("10.50.0.0/24"), net("10.50.2.128/25"), net("172.17.0.0/16")]
    for key in ("a", "b", "c", "d", "e", "f"):
        chosen = SMALL.choose(taken, key)
        assert chosen in (net("10.50.1.0/24"), net("10.50.3.0/24"))


def test_a_range_larger_than_a_candidate_blocks_every_candidate_inside() -> None:
    pool = pool_from({})
    assert pool is not None
    taken = [net("10.208.0.0/13")]  # half of the pool: someone's VPN, say
    assert pool.in_use(taken) == 2048
    for key in map(str, range(50)):
        chosen = pool.choose(taken, key)
        assert chosen is not None and not chosen.overlaps(taken[0])


def test_a_full_pool_gives_none_and_a_covering_route_fills_it() -> None:
    assert SMALL.choose([SMALL.subnet(i) for i in range(4)], "x") is None
    assert SMALL.choose([net("10.0.0.0/8")], "x") is None
    assert SMALL.choose([SMALL.subnet(i) for i in (0, 1, 3)], "x") == net("10.50.2.0/24")


def test_the_search_starts_at_a_point_of_the_name_and_wraps_around() -> None:
    pool = pool_from({})
    assert pool is not None
    assert pool.choose([], "envkit-shop-1a2b3c-edge") == pool.choose([], "envkit-shop-1a2b3c-edge")
    chosen = {pool.choose([], f"envkit-shop-{i:06x}-edge") for i in range(200)}
    assert len(chosen) > 190  # names spread: concurrent creates rarely pick the same one
    first = pool.choose([], "k")
    assert first is not None
    after = pool.choose([first], "k")  # the next free one after it, wrapping at the end of the pool
    index = next(i for i in range(pool.capacity) if pool.subnet(i) == first)
    assert after == pool.subnet((index + 1) % pool.capacity)


def test_blocked_candidates_are_merged_intervals() -> None:
    pool = SubnetPool((net("10.50.0.0/22"), net("10.60.0.0/23")), 24)
    assert pool.blocked([net("10.50.1.0/24"), net("10.50.2.5/32"), net("10.60.0.0/16"), net("10.70.0.0/24")]) == [
        (1, 2), (4, 5)]  # 10.50.3.0/24 (number 3) is free
    assert pool.blocked([net("10.50.0.0/24"), net("10.50.3.0/24")]) == [(0, 0), (3, 3)]


def test_the_gateway_is_the_first_address() -> None:
    assert str(gateway(net("10.208.7.0/24"))) == "10.208.7.1"


def test_host_routes_are_read_from_proc_net_route() -> None:
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # default route: left out
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # 192.168.2.0/24
        "tun0\t0000D00A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"  # 10.208.0.0/16 (a VPN)
        "bad line\n"
    )
    assert parse_routes(text) == [net("192.168.2.0/24"), net("10.208.0.0/16")]


# -- allocating: overlaps retried -----------------------------------------------------------------------
class Engine:
    """A tiny engine that refuses overlapping subnets atomically, as Docker's IPAM does."""

    def __init__(self, held: list[IPv4Network] | None = None, stale: bool = False) -> None:
        self.held = list(held or [])
        self.stale = stale  # its listing shows nothing: as if others created at the same moment
        self.lock = threading.Lock()
        self.names: set[str] = set()

    def taken(self) -> list[IPv4Network]:
        with self.lock:
            return [] if self.stale else list(self.held)

    def create(self, name: str, subnet: IPv4Network) -> str:
        with self.lock:
            if any(subnet.overlaps(h) for h in self.held):
                raise Conflict("Pool overlaps with other one on this address space")
            self.held.append(subnet)
            self.names.add(name)
            return f"{name}@{subnet}"


def test_a_subnet_taken_at_the_last_moment_is_retried_with_another() -> None:
    engine = Engine(held=[net("10.50.0.0/24"), net("10.50.1.0/24"), net("10.50.3.0/24")], stale=True)
    made = Allocator(SMALL).allocate("n", engine.taken, lambda s: engine.create("n", s), lambda: False)
    assert made == "n@10.50.2.0/24"


def test_a_name_conflict_is_raised_as_it_is() -> None:
    def create(subnet: IPv4Network) -> str:
        raise Conflict("network with name n already exists")

    with pytest.raises(Conflict, match="already exists"):
        Allocator(SMALL).allocate("n", list, create, lambda: True)


def test_a_full_pool_is_an_error_that_says_what_to_do() -> None:
    engine = Engine(held=[SMALL.subnet(i) for i in range(4)])
    with pytest.raises(EngineError) as info:
        Allocator(SMALL).allocate("envkit-r-edge", engine.taken, lambda s: engine.create("x", s), lambda: False)
    assert str(info.value) == (
        "create network envkit-r-edge: no free /24 subnet left in ENVKIT_SUBNET_POOL (10.50.0.0/22: 4 of 4 in use); "
        "remove runs (envkit ls, envkit down) or set a larger pool in ENVKIT_SUBNET_POOL")


def test_overlaps_are_bounded() -> None:
    pool = pool_from({})
    assert pool is not None
    calls: list[IPv4Network] = []

    def create(subnet: IPv4Network) -> str:
        calls.append(subnet)
        raise Conflict("Pool overlaps with other one on this address space")

    with pytest.raises(EngineError, match=f"{OVERLAP_ATTEMPTS} subnets in a row were taken by others"):
        Allocator(pool).allocate("n", list, create, lambda: False)
    assert len(calls) == len(set(calls)) == OVERLAP_ATTEMPTS  # never the same one twice


def test_threads_of_one_process_choose_distinct_subnets_at_once() -> None:
    engine = Engine()
    allocator = Allocator(SubnetPool((net("10.50.0.0/20"),), 24))  # 16 candidates for 16 networks
    results: list[str] = []
    barrier = threading.Barrier(16)

    def one(i: int) -> None:
        barrier.wait()
        results.append(allocator.allocate("same-key", engine.taken, lambda s: engine.create(f"n{i}", s),
                                          lambda: False))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len(set(engine.held)) == 16
    assert all(not a.overlaps(b) for i, a in enumerate(engine.held) for b in engine.held[i + 1:])
