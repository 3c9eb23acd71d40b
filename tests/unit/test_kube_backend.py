"""The Kubernetes backend (the client path) against API server answers replayed through the official
client's REST layer (``kube_replay``): what it sends, how it reads pods, namespaces and errors."""

from __future__ import annotations

import copy
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from envkit import labels as L
from envkit.backends._kube_forward import Forward
from envkit.backends.base import Capability, PortKey
from envkit.backends.kubernetes import KubernetesBackend
from envkit.blueprint import load
from envkit.errors import BlueprintError, Conflict, EngineError, EngineUnavailable, NotFound, ServiceFailed, Transient
from envkit.execute import Executor
from envkit.plan import RunIdentity, make_plan
from envkit.runs import teardown
from tests.unit.kube_replay import ANSWERS, Expect, Replay, api_client
from tests.unit.kube_schemas import NEWEST, validate

IDENTITY = RunIdentity("demo", "dev@ci-7:4242", "2026-12-01T10:00:00Z", "0.9.0")
NS = "/api/v1/namespaces/envkit-demo"
POLICIES = "/apis/networking.k8s.io/v1/namespaces/envkit-demo/networkpolicies"
POD = f"{NS}/pods/envkit-demo-web-1"
RUN = {"labelSelector": "io.envkit.managed=true,io.envkit.run=demo"}


def backend(*expected: Expect, env: dict[str, str] | None = None) -> tuple[KubernetesBackend, Replay]:
    replay = Replay(list(expected))
    return KubernetesBackend(env or {}, api_client=api_client(replay)), replay


def test_ping_reads_the_version_with_the_token() -> None:
    b, replay = backend(Expect("GET", "/version", "version"))
    b.ping()
    assert replay.requests[0]["headers"]["authorization"] == "Bearer t0ken"


def test_a_refused_token_is_an_unavailable_engine() -> None:
    b, _ = backend(Expect("GET", "/version", "unauthorized", status=401))
    with pytest.raises(EngineUnavailable, match=r"API server https://k8s.test:6443 refused: GET /version: Unauthorized"):
        b.ping()


@pytest.mark.parametrize(("status", "answer", "error"), [
    (404, "pod_not_found", NotFound), (409, "already_exists_service", Conflict)])
def test_errors_by_kind(status: int, answer: str, error: type[Exception]) -> None:
    b, _ = backend(Expect("GET", POD, answer, status=status))
    with pytest.raises(error, match=ANSWERS[answer]["message"][:20]):
        b.inspect_container("envkit-demo/envkit-demo-web-1")


def test_a_transient_answer_is_retried() -> None:
    from envkit.backends._kube_wire import _error

    assert isinstance(_error(504, "GET /x", json.dumps(ANSWERS["etcd_timeout"]), "s"), Transient)
    b, replay = backend(Expect("GET", POD, "etcd_timeout", status=504), Expect("GET", POD, "pod_oom"))
    assert b.inspect_container("envkit-demo/envkit-demo-web-1").exit_code == 137
    assert len(replay.requests) == 2


def test_an_unreachable_server_is_reported() -> None:
    cfg_client = api_client(Replay([]))
    cfg_client.configuration.host = "https://127.0.0.1:1"
    from kubernetes.client.rest import RESTClientObject

    cfg_client.rest_client = RESTClientObject(cfg_client.configuration)
    cfg_client.configuration.retries = 0
    b = KubernetesBackend({}, api_client=cfg_client)
    with pytest.raises(EngineUnavailable, match=r"cannot reach the API server https://127.0.0.1:1"):
        b.ping()


def test_no_kubeconfig_is_refused_and_a_kubeconfig_is_read(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="no kubeconfig"):
        KubernetesBackend({})
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: ci\nclusters:\n- name: c\n  cluster: {server: 'https://10.9.8.7:6443'}\n"
                      "users:\n- name: u\n  user: {token: abc}\ncontexts:\n- name: ci\n  context: {cluster: c, user: u}\n")
    assert KubernetesBackend({"KUBECONFIG": str(config)}).where == "https://10.9.8.7:6443"
    with pytest.raises(EngineUnavailable, match="cannot read the kubeconfig"):
        KubernetesBackend({"KUBECONFIG": str(tmp_path / "missing")})


TINY = """
name: tiny
services:
  web:
    image: nginx:1.27
    environment: {MODE: test, TOKEN: {value: tok-123456, secret: true}}
    ports: [80]
"""


def plan_of(tmp_path: Path, b: KubernetesBackend, text: str = TINY) -> Any:
    (tmp_path / "blueprint.yaml").write_text(text)
    bp = load(tmp_path)
    return make_plan(bp, IDENTITY, frozenset(), {}, capabilities=b.capabilities, engine=b.name)


def test_up_then_teardown_through_the_plan(tmp_path: Path) -> None:
    running = copy.deepcopy(ANSWERS["pod_running"])
    terminating = copy.deepcopy(ANSWERS["namespace_terminating"])
    b, replay = backend(
        Expect("POST", "/api/v1/namespaces", status=201),
        Expect("POST", POLICIES, status=201, times=4),  # default deny, dns, the network's peers, its way out
        Expect("POST", f"{NS}/secrets", status=201),
        Expect("POST", f"{NS}/pods", status=201),
        Expect("POST", f"{NS}/services", status=201),
        Expect("POST", f"{NS}/services", "already_exists_service", status=409),  # a retried call: taken as made
        Expect("GET", POD, "pod_pending"), Expect("GET", POD, running, times=-1),
        Expect("GET", "/api/v1/pods", {"kind": "PodList", "apiVersion": "v1", "items": [running]}, query=RUN),
        Expect("GET", "/api/v1/persistentvolumeclaims", {"kind": "PersistentVolumeClaimList", "items": []}, query=RUN, times=2),
        Expect("GET", "/api/v1/configmaps", {"kind": "ConfigMapList", "items": []}, times=2),
        Expect("GET", "/api/v1/namespaces", {"kind": "NamespaceList", "items": [ANSWERS["namespace_active"]]}, query=RUN),
        Expect("DELETE", POD, running), Expect("DELETE", f"{NS}/secrets/envkit-demo-web-1-env", "deleted"),
        Expect("DELETE", NS, terminating), Expect("GET", NS, terminating), Expect("GET", NS, "namespace_not_found", status=404),
        Expect("GET", "/api/v1/pods", {"kind": "PodList", "items": []}, query=RUN),
        Expect("GET", "/api/v1/namespaces", {"kind": "NamespaceList", "items": []}, query=RUN))
    Executor(b).run(plan_of(tmp_path, b))
    ns = replay.sent("POST", "/api/v1/namespaces")[0]["body"]["metadata"]
    assert ns["name"] == "envkit-demo" and ns["labels"][L.RUN] == "demo"
    assert ns["annotations"][L.OWNER] == "dev@ci-7:4242" and L.OWNER not in ns["labels"]
    names = [r["body"]["metadata"]["name"] for r in replay.sent("POST", POLICIES)]
    assert names == ["envkit-default-deny", "envkit-dns", "envkit-net-default", "envkit-out-default"]
    pod = replay.sent("POST", f"{NS}/pods")[0]["body"]
    assert pod["metadata"]["labels"]["io.envkit.network.default"] == "true"
    assert pod["metadata"]["labels"]["io.envkit.container"] == "envkit-demo-web-1"
    assert pod["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["MODE"] == {"name": "MODE", "value": "test"}
    assert env["TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "envkit-demo-web-1-env", "key": "web.TOKEN"}
    assert "tok-123456" not in repr(pod)
    assert replay.sent("POST", f"{NS}/secrets")[0]["body"]["stringData"] == {"web.TOKEN": "tok-123456"}
    services = [r["body"] for r in replay.sent("POST", f"{NS}/services")]
    assert [s["metadata"]["name"] for s in services] == ["web", "web-1"]
    assert services[1]["spec"]["selector"] == {L.REPLICA: "1", L.RUN: "demo", L.SERVICE: "web"}
    assert services[0]["spec"]["clusterIP"] == "None"
    state = b.inspect_container("envkit-demo/envkit-demo-web-1")  # a running pod: its port forwarded to 127.0.0.1
    assert state.running and state.health == "healthy" and state.name == "envkit-demo-web-1"
    assert state.ports[PortKey(80)].host_ip == "127.0.0.1" and state.ports[PortKey(80)].port > 0
    assert state.addresses == {"envkit-demo": "10.244.2.17"} and state.labels[L.OWNER] == "dev@ci-7:4242"

    made = [r["body"] for r in replay.requests if r["method"] == "POST"]
    assert len(made) == 9
    assert [f"{v} {o['kind']}: {e}" for o in made for v in NEWEST for e in validate(o, v)] == []  # what a cluster takes

    counts = teardown(b, ["demo"])
    assert counts == {"container": 1, "network": 1, "volume": 0}
    assert replay.sent("DELETE", POD)[0]["query"] == {"gracePeriodSeconds": "0"}
    assert not b._forwards  # the pod's forwards went with it
    assert replay.left() == []


def test_a_pod_the_kubelet_cannot_start_is_an_error_with_its_reason(tmp_path: Path) -> None:
    b, _ = backend(Expect("POST", "/api/v1/namespaces", status=201), Expect("POST", POLICIES, status=201, times=4),
                   Expect("POST", f"{NS}/secrets", status=201), Expect("POST", f"{NS}/pods", status=201),
                   Expect("POST", f"{NS}/services", status=201, times=2),
                   Expect("GET", POD, "pod_image_pull_backoff", times=-1))
    b.pending_grace = 0
    plan = plan_of(tmp_path, b)
    with pytest.raises(ServiceFailed, match=r"service web: cannot start: start container envkit-demo/envkit-demo-web-1: "
                                            r"its pod did not start: ImagePullBackOff: Back-off pulling image"):
        Executor(b).run(plan)


def test_unschedulable_is_named() -> None:
    from envkit.backends._kube_wire import waiting_reason

    reason = waiting_reason(ANSWERS["pod_unschedulable"])
    assert reason.startswith("Unschedulable: 0/3 nodes are available: 3 Insufficient memory")
    assert waiting_reason(ANSWERS["pod_pending"]) == ""


def test_an_ended_pod_reads_as_an_exited_container() -> None:
    b, _ = backend(Expect("GET", f"{NS}/pods/envkit-demo-job-1", "pod_oom", times=-1))
    state = b.inspect_container("envkit-demo/envkit-demo-job-1")
    assert (state.status, state.exit_code, state.oom_killed, state.ports) == ("exited", 137, True, {})
    assert state.finished_at.startswith("2026-12-01T10:00:09")
    assert b.wait_container("envkit-demo/envkit-demo-job-1", 1) == 137


def test_a_namespace_stuck_in_terminating_is_reported_with_its_finalizers() -> None:
    b, _ = backend(Expect("DELETE", NS, "namespace_terminating"), Expect("GET", NS, "namespace_terminating", times=-1),
                   env={"ENVKIT_KUBE_DELETE_TIMEOUT": "0.6"})
    with pytest.raises(EngineError) as err:
        b.remove_network("namespace:envkit-demo")
    text = str(err.value)
    assert text.startswith("namespace envkit-demo is stuck in Terminating after 0.6s (finalizers kubernetes; ")
    assert ("NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: "
            "kubernetes.io/pvc-protection") in text
    assert "NamespaceDeletionContentFailure" not in text  # a condition that is False is no reason


def test_listing_filters_what_only_annotations_carry() -> None:
    mine, theirs = copy.deepcopy(ANSWERS["pod_running"]), copy.deepcopy(ANSWERS["pod_running"])
    theirs["metadata"]["annotations"][L.OWNER] = "other@host:1"
    b, replay = backend(Expect("GET", "/api/v1/pods", {"kind": "PodList", "items": [mine, theirs]}))
    found = b.list_containers({L.MANAGED: "true", L.RUN: "demo", L.OWNER: "dev@ci-7:4242"})
    assert [c.labels[L.OWNER] for c in found] == ["dev@ci-7:4242"]
    assert replay.requests[0]["query"] == RUN  # the owner cannot be a label value: filtered here


def test_log_lines_carry_the_kubelet_times() -> None:
    b, replay = backend(Expect("GET", f"{POD}/log", "log"))
    lines = b.log_lines("envkit-demo/envkit-demo-web-1", tail=3)
    assert [x.text for x in lines] == ["listening on :80", "ready", "GET /health 200"]
    assert lines[1].at.isoformat() == "2026-12-01T10:00:03.500000+00:00"
    assert replay.requests[0]["query"] == {"timestamps": "true", "tailLines": "3"}


def test_builds_need_a_registry(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    text = "name: tiny\nservices:\n  web:\n    build: ./app\n"
    b, _ = backend()
    with pytest.raises(BlueprintError, match=r"blueprint.yaml:4:5 services.web.build: engine kubernetes cannot build images"):
        plan_of(tmp_path, b, text)
    with_registry, _ = backend(env={"ENVKIT_KUBE_REGISTRY": "registry.example:5000/"})
    assert Capability.BUILD in with_registry.capabilities
    assert with_registry._image("envkit/tiny-web:0123") == "registry.example:5000/envkit/tiny-web:0123"
    assert with_registry._image("nginx:1.27") == "nginx:1.27"


def test_bind_mounts_are_refused_at_plan_time(tmp_path: Path) -> None:
    b, _ = backend()
    text = "name: tiny\nservices:\n  web:\n    image: x\n    allow: [host-paths]\n    volumes: ['/srv:/data']\n"
    with pytest.raises(BlueprintError, match=r"services.web.volumes\[0\]: engine kubernetes cannot mount paths of this machine"):
        plan_of(tmp_path, b, text)


def test_a_forward_copies_both_ways() -> None:
    pods: list[socket.socket] = []

    def open_stream() -> socket.socket:  # stands for the portforward websocket: an echo server's end
        ours, theirs = socket.socketpair()
        pods.append(theirs)

        def echo() -> None:
            while data := theirs.recv(1024):
                theirs.sendall(data.upper())
            theirs.close()
        threading.Thread(target=echo, daemon=True).start()
        return ours

    forward = Forward(open_stream, "t")
    try:
        for _ in range(2):  # each connection its own stream
            with socket.create_connection(("127.0.0.1", forward.port), timeout=5) as conn:
                conn.sendall(b"ping")
                assert conn.recv(16) == b"PING"
        assert len(pods) == 2
    finally:
        forward.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", forward.port), timeout=1):
        pass


def test_gc_finds_an_expired_run_by_its_namespace() -> None:
    from datetime import UTC, datetime

    from envkit import gc

    ns = copy.deepcopy(ANSWERS["namespace_active"])
    ns["metadata"]["labels"][L.LIFETIME] = "detached"
    ns["metadata"]["annotations"][L.EXPIRES_AT] = "2026-12-01T11:00:00Z"
    b, _ = backend(Expect("GET", "/api/v1/pods", {"kind": "PodList", "items": []}, times=-1),
                   Expect("GET", "/api/v1/persistentvolumeclaims", {"kind": "PersistentVolumeClaimList", "items": []}),
                   Expect("GET", "/api/v1/configmaps", {"kind": "ConfigMapList", "items": []}),
                   Expect("GET", "/api/v1/namespaces", {"kind": "NamespaceList", "items": [ns]}))
    found = gc.survey(b, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert [(g.run_id, g.collect) for g in found.collectable] == [("demo", True)]
    assert "expired at 2026-12-01T11:00:00Z" in found.collectable[0].reason


def test_a_namespace_of_another_run_is_not_taken_over() -> None:
    from envkit.backends.base import NetworkSpec

    theirs = copy.deepcopy(ANSWERS["namespace_active"])
    theirs["metadata"]["labels"][L.RUN] = "demo."  # another run whose id maps to the same namespace name
    b, _ = backend(Expect("POST", "/api/v1/namespaces", {**ANSWERS["already_exists_service"], "message": "namespaces "
                                                          "\"envkit-demo\" already exists"}, status=409),
                   Expect("GET", NS, theirs))
    with pytest.raises(Conflict, match=r"namespace envkit-demo exists and is not run demo's \(run demo\.\)"):
        b.create_network(NetworkSpec("envkit-demo-default", ((L.RUN, "demo"), (L.MANAGED, "true"), (L.NETWORK, "default"))))


def test_following_a_log_streams_its_lines() -> None:
    b, replay = backend(Expect("GET", f"{POD}/log", "log", query={"follow": "true"}))
    lines = list(b.follow_log_lines("envkit-demo/envkit-demo-web-1", tail=10))
    assert [x.text for x in lines] == ["listening on :80", "ready", "GET /health 200"]
    assert replay.requests[0]["query"] == {"timestamps": "true", "tailLines": "10", "follow": "true"}


@pytest.mark.parametrize("code", [0, 3])
def test_exec_reads_the_channels_and_the_exit_code(code: int) -> None:
    from tests.unit.kube_ws import ExecServer

    server = ExecServer(b"accepting connections\n", b"", code)
    client = api_client(Replay([]))
    client.configuration.host = f"http://127.0.0.1:{server.port}"
    b = KubernetesBackend({}, api_client=client)
    result = b.exec("envkit-demo/envkit-demo-db-1", ("pg_isready", "-h", "127.0.0.1"), timeout=5)
    assert (result.exit_code, result.output) == (code, "accepting connections\n")
    line = server.request.split("\r\n")[0]
    assert line.startswith("GET /api/v1/namespaces/envkit-demo/pods/envkit-demo-db-1/exec?")
    assert "command=pg_isready" in line and "command=-h" in line and "stdout=True" in line.replace("true", "True")
    assert "authorization: Bearer t0ken" in server.request


def test_a_running_pods_port_is_forwarded_through_the_port_forward_api() -> None:
    from tests.unit.kube_ws import PortForwardServer

    server = PortForwardServer(80)
    replay = Replay([Expect("GET", POD, "pod_running", times=-1)])
    client = api_client(replay)
    client.configuration.host = f"http://127.0.0.1:{server.port}"
    b = KubernetesBackend({}, api_client=client)
    try:
        endpoint = b.inspect_container("envkit-demo/envkit-demo-web-1").ports[PortKey(80)]
        for _ in range(2):  # each connection its own port-forward stream
            with socket.create_connection((endpoint.host_ip, endpoint.port), timeout=10) as conn:
                conn.sendall(b"get /health")
                got = b""
                while len(got) < 11:
                    got += conn.recv(64)
                assert got == b"GET /HEALTH"
        assert len(server.requests) == 2
        assert server.requests[0].startswith("GET /api/v1/namespaces/envkit-demo/pods/envkit-demo-web-1/portforward?ports=80 ")
    finally:
        b.close()
        server.stop()
