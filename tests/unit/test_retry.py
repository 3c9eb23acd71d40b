"""The one retry policy, and the one translation of Docker's errors into kinds (no engine needed)."""

from __future__ import annotations

from collections.abc import Callable

import docker.errors
import pytest
import requests
import urllib3.exceptions

from envkit import labels as L
from envkit import retry
from envkit.backends import ENGINES, connect, engine_name
from envkit.backends.base import ContainerSpec, NetworkAttachment, NetworkSpec
from envkit.backends.docker import translate
from envkit.backends.fake import FakeBackend
from envkit.errors import (
    Busy,
    Conflict,
    ConnectionLost,
    EngineError,
    EngineUnavailable,
    NotFound,
    PortBusy,
    Transient,
    UsageError,
)


def flaky(errors: list[Exception]) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return calls, fn


def test_transient_and_busy_failures_are_tried_again() -> None:
    calls, fn = flaky([Transient("500"), Busy("active endpoints")])
    waits: list[float] = []
    assert retry.call(fn, sleep=waits.append) == "done"  # type: ignore[arg-type]
    assert len(calls) == 3 and waits == [0.05, 0.1]


@pytest.mark.parametrize("error", [NotFound("gone"), Conflict("taken"), EngineError("bad"), EngineUnavailable("x")])
def test_permanent_failures_are_raised_at_once(error: Exception) -> None:
    calls, fn = flaky([error])
    with pytest.raises(type(error)):
        retry.call(fn, sleep=lambda s: None)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_the_policy_is_bounded() -> None:
    calls, fn = flaky([Transient("500")] * 100)
    waits: list[float] = []
    with pytest.raises(Transient):
        retry.call(fn, sleep=waits.append)  # type: ignore[arg-type]
    assert len(calls) == retry.ATTEMPTS == 25
    assert max(waits) == retry.MAX_WAIT and sum(waits) < retry.DEADLINE


def api_error(status: int, text: str, cls: type[docker.errors.APIError] = docker.errors.APIError) -> Exception:
    response = requests.Response()
    response.status_code = status
    return cls(text, response=response, explanation=text)


@pytest.mark.parametrize(("error", "kind"), [
    (api_error(404, "No such container: x", docker.errors.NotFound), NotFound),
    (api_error(404, "network n not found"), NotFound),
    (api_error(409, 'Conflict. The container name "/x" is already in use'), Conflict),
    (api_error(409, "Container x is not running"), Conflict),
    (api_error(403, "endpoint with name x already exists in network n"), Conflict),
    (api_error(500, "Container x is not paused"), Conflict),
    # a rename onto a taken name: Docker 20.10 answers 500 (a retry cannot succeed: another container holds it)
    (api_error(500, 'Error when allocating new name: Conflict. The container name "/x" is already in use by '
                    'container "abc". You have to remove (or rename) that container to be able to reuse that name.'),
     Conflict),
    (api_error(403, "error while removing network: network n id 1 has active endpoints"), Busy),
    (api_error(409, "remove v: volume is in use - [abc]"), Busy),
    (api_error(409, "removal of container x is already in progress"), Busy),
    (api_error(500, "driver failed to remove root filesystem"), Transient),
    (api_error(503, "service unavailable"), Transient),
    (api_error(400, "Invalid signal: SIGFOO"), EngineError),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out.")), Transient),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("aborted", ConnectionResetError())),
     ConnectionLost),  # a Transient: the engine may or may not have done it (envkit.engine_lost)
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("aborted", FileNotFoundError(2, "x"))),
     EngineUnavailable),
    (docker.errors.DockerException("odd"), EngineError),
])
def test_docker_errors_are_translated_by_kind(error: Exception, kind: type[Exception]) -> None:
    translated = translate(error, "do it", "unix:///var/run/docker.sock")
    assert type(translated) is kind


def test_a_translated_message_names_the_call() -> None:
    assert str(translate(api_error(404, "No such container: x"), "inspect container x", "")) == \
        "inspect container x: No such container: x"
    assert str(translate(api_error(500, "boom"), "", "")) == "boom"  # a build's reason alone


def test_the_engine_is_chosen_in_one_place() -> None:
    assert engine_name(None, {}) == "docker"
    assert engine_name(None, {"ENVKIT_ENGINE": "Docker"}) == "docker"
    assert engine_name("docker", {"ENVKIT_ENGINE": "swarm"}) == "docker"  # --engine wins
    assert {"docker", "swarm"} <= set(ENGINES)
    with pytest.raises(UsageError, match=r"^ENVKIT_ENGINE: unknown engine 'nomad' \(known engines: docker, "):
        connect(None, {"ENVKIT_ENGINE": "nomad"})
    with pytest.raises(UsageError, match=r"^--engine: unknown engine 'k8s'"):
        connect("k8s", {})


# -- creates under the policy: a Conflict after a failed attempt (on the fake engine) ---------------------
def timed_out_after(make: Callable[[], str], times: int = 1) -> Callable[[], str]:
    """``make`` as an engine that did the work but whose answer was lost ``times`` times (a read timeout)."""
    lost = [times]

    def call() -> str:
        result = make()
        if lost[0]:
            lost[0] -= 1
            raise Transient("create network n: timed out")
        return result

    return call


def network_spec(owner: str) -> NetworkSpec:
    return NetworkSpec("envkit-r-edge", ((L.MANAGED, "true"), (L.RUN, "r"), (L.OWNER, owner)))


def ours(fake: FakeBackend, spec: NetworkSpec) -> Callable[[], str | None]:
    def existing() -> str | None:
        return next((r.id for r in fake.list_resources({L.RUN: "r"})
                     if r.name == spec.name and dict(r.labels) == dict(spec.labels)), None)
    return existing


def test_a_create_that_timed_out_but_happened_is_that_attempts_success() -> None:
    fake, spec = FakeBackend(), network_spec("me")
    made = retry.create(timed_out_after(lambda: fake.create_network(spec)), ours(fake, spec), sleep=lambda s: None)
    assert [r.id for r in fake.list_resources({L.RUN: "r"})] == [made]
    assert [m for m, _ in fake.calls].count("create_network") == 2  # the retry saw the name taken: a Conflict


def test_a_conflict_after_a_retry_on_someone_elses_object_is_an_error() -> None:
    fake = FakeBackend()
    fake.create_network(network_spec("other"))  # not ours: other labels
    spec = network_spec("me")
    calls = [0]

    def make() -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise Transient("create network: 503 service unavailable")
        return fake.create_network(spec)

    with pytest.raises(Conflict, match="already exists"):
        retry.create(make, ours(fake, spec), sleep=lambda s: None)


def test_a_conflict_on_the_first_attempt_is_raised_without_looking() -> None:
    fake, spec = FakeBackend(), network_spec("me")
    fake.create_network(spec)  # even one with our labels: nothing of this call can have made it
    looked: list[int] = []

    def existing() -> str | None:
        looked.append(1)
        return "x"

    with pytest.raises(Conflict):
        retry.create(lambda: fake.create_network(spec), existing, sleep=lambda s: None)
    assert looked == []


def test_a_busy_removal_is_waited_for_then_done() -> None:
    fake = FakeBackend(images={"img"})
    net = fake.create_network(network_spec("me"))
    box = fake.create_container(ContainerSpec("c", "img", (), (NetworkAttachment("envkit-r-edge"),)))
    with pytest.raises(Busy):
        fake.remove_network(net)  # "has active endpoints"

    attempts: list[int] = []

    def remove() -> None:
        attempts.append(1)
        try:
            fake.remove_network(net)
        finally:
            fake.remove_container(box, 0)  # the endpoint detaches while the removal waits

    waits: list[float] = []
    retry.call(remove, sleep=waits.append)
    assert fake.networks == {} and len(attempts) == 2 and waits == [0.05]


def test_an_overlapping_subnet_is_a_conflict() -> None:
    error = api_error(403, "Pool overlaps with other one on this address space")
    assert type(translate(error, "create network n", "")) is Conflict


def test_a_fixed_address_taken_is_no_busy_host_port() -> None:
    # Docker's answer to starting a container whose fixed address another container holds: no host port in it.
    taken = translate(api_error(403, "Address already in use"), "start container c1", "")
    assert type(taken) is Conflict and str(taken) == "start container c1: Address already in use"
    bound = translate(api_error(500, "driver failed programming external connectivity on endpoint x: Error starting "
                                     "userland proxy: listen tcp4 127.0.0.1:8080: bind: address already in use"), "", "")
    assert isinstance(bound, PortBusy) and (bound.host_ip, bound.port) == ("127.0.0.1", 8080)
    # Newer engines put what failed first; a host port without an address (Podman's rootlessport) is still one.
    later = translate(api_error(403, "failed to set up container networking: Address already in use"), "start c1", "")
    assert type(later) is Conflict and str(later).lower().endswith("address already in use")
    unnamed = translate(api_error(500, "rootlessport listen tcp :8080: bind: address already in use"), "", "")
    assert isinstance(unnamed, PortBusy)
