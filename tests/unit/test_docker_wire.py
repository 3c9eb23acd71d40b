"""What the Docker backend reads from the engine's answers (``envkit.backends._docker_wire``)."""

from __future__ import annotations

from envkit.backends._docker_wire import from_inspect
from envkit.backends.types import Endpoint, PortKey


def _inspect(status: str, settings_ports: dict[str, object], bindings: dict[str, object]) -> dict[str, object]:
    return {"Id": "c1", "Name": "/x", "State": {"Status": status}, "Config": {"Labels": {}},
            "NetworkSettings": {"Ports": settings_ports}, "HostConfig": {"PortBindings": bindings}}


def test_a_container_never_started_shows_the_host_ports_chosen_at_its_create() -> None:
    bound = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49200"}], "53/udp": [{"HostIp": "", "HostPort": ""}]}
    state = from_inspect(_inspect("created", {}, bound))
    assert state.ports == {PortKey(5432, "tcp"): Endpoint("127.0.0.1", 49200)}  # an unchosen port is no endpoint


def test_a_started_container_shows_what_the_engine_published_and_a_stopped_one_nothing() -> None:
    bound = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49200"}]}
    live = {"5432/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49201"}, {"HostIp": "::", "HostPort": "49201"}]}
    assert from_inspect(_inspect("running", live, bound)).ports == {PortKey(5432, "tcp"): Endpoint("0.0.0.0", 49201)}
    assert from_inspect(_inspect("exited", {}, bound)).ports == {}


def test_a_fixed_address_is_read_running_or_stopped_and_a_chosen_one_only_running() -> None:
    fixed = {"n1": {"IPAMConfig": {"IPv4Address": "10.0.0.5"}, "IPAddress": ""}, "n2": {"IPAMConfig": None, "IPAddress": ""}}
    stopped = {**_inspect("exited", {}, {}), "NetworkSettings": {"Networks": fixed}}
    assert from_inspect(stopped).fixed == {"n1": "10.0.0.5"} and from_inspect(stopped).addresses == {}
    running = {"n1": {**fixed["n1"], "IPAddress": "10.0.0.5"}, "n2": {"IPAMConfig": None, "IPAddress": "10.0.1.2"}}
    state = from_inspect({**_inspect("running", {}, {}), "NetworkSettings": {"Networks": running}})
    assert state.fixed == {"n1": "10.0.0.5"} and state.addresses == {"n1": "10.0.0.5", "n2": "10.0.1.2"}
