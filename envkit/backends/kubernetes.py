"""The Kubernetes backend (``--engine kubernetes``): each run a namespace, each envkit container a pod.

The only module that imports the official client (``kubernetes``, the optional extra
``envkit[kubernetes]``), and only when this engine is chosen. It talks to the API server of the
kubeconfig in ``KUBECONFIG`` (``--kubeconfig``; context ``ENVKIT_KUBE_CONTEXT``, else the current one),
or, inside a pod, to its own cluster. Requests and error translation: ``_kube_wire``; the objects are
those ``envkit render`` writes (``_kube_objects``, ``_kube_policy``), so both paths agree.

How the plan's steps land (envkit's model is per container, as on Swarm):

    network   → the run's namespace ``envkit-<run>`` (on first use, with its default-deny and DNS
                policies) and the network's NetworkPolicies
    volume    → a PersistentVolumeClaim
    container → ``create`` records the spec; ``start`` creates a pod (``restartPolicy: Never``: an exit is
                seen as on one engine) named like the container, its secret environment entries in a
                Secret, and the headless Services of its DNS names; then waits until it runs, reporting
                what keeps it pending (ImagePullBackOff, Unschedulable) with the kubelet's reason
    readiness → envkit's own probes: tcp/http through the pod's port-forwards, exec through the exec API
    ports     → port-forwards to 127.0.0.1 (``_kube_forward``), opened when the pod runs: outputs work
    teardown  → pods, claims, then the namespace; its deletion is waited for, and a namespace stuck in
                Terminating is reported with its finalizers and conditions (``ENVKIT_KUBE_DELETE_TIMEOUT``)

Images: the kubelet pulls. A build context needs ``ENVKIT_KUBE_REGISTRY`` (envkit's content tags under
it, pushed there beforehand); without it, builds are refused at plan time (``Capability.BUILD``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from envkit import labels as L
from envkit.backends import _kube_objects as K
from envkit.backends._kube_forward import Forward, Stream
from envkit.backends._kube_policy import baseline, network_policy
from envkit.backends._kube_wire import Api, log_line, log_query, matches, path_name, selector, state, stuck, waiting_reason
from envkit.backends.base import (
    Backend,
    BuildSpec,
    Capability,
    ContainerSpec,
    ContainerState,
    Endpoint,
    ExecResult,
    ImageInfo,
    LogLine,
    NetworkSpec,
    PortKey,
    Resource,
    VolumeSpec,
)
from envkit.errors import Conflict, EngineError, EngineUnavailable, NotFound, Unsupported

__all__ = ["KubernetesBackend", "open_backend"]

CLAIM = "configmap"  # the middle part of a claim's volume id: NAMESPACE/configmap/NAME
NS_PREFIX = "namespace:"  # a run's namespace as a Resource id (kind "network": the run's isolation boundary)
#: the run's own labels, which its namespace carries
RUN_KEYS = (L.MANAGED, L.RUN, L.BLUEPRINT, L.BLUEPRINT_PATH, L.OWNER, L.CREATED_AT, L.EXPIRES_AT, L.LIFETIME,
            L.VERSION)


def _client(environment: Mapping[str, str]) -> tuple[Any, str]:
    """An ``ApiClient`` for the kubeconfig of ``KUBECONFIG`` (or this pod's cluster), and where it points."""
    from kubernetes import client, config  # the optional extra; only this engine needs it

    paths = [p for p in environment.get("KUBECONFIG", "").split(os.pathsep) if p]
    try:
        if paths:
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=paths[0], context=environment.get("ENVKIT_KUBE_CONTEXT") or None)
        elif environment.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            api = client.ApiClient(cfg)
        else:
            raise EngineUnavailable("engine kubernetes: no kubeconfig (set KUBECONFIG or pass --kubeconfig)")
    except (config.ConfigException, OSError, ValueError) as exc:
        raise EngineUnavailable(f"engine kubernetes: cannot read the kubeconfig {paths[0] if paths else ''}: {exc}") from exc
    return api, str(api.configuration.host)


class KubernetesBackend(Backend):
    name = "kubernetes"
    direct_routes = False  # pod addresses live inside the cluster: tests use the port-forwards

    def __init__(self, environment: Mapping[str, str], api_client: Any = None) -> None:
        client, where = (api_client, str(api_client.configuration.host)) if api_client is not None else _client(environment)
        self.api = Api(client, where)
        self.where = where
        self.registry = environment.get("ENVKIT_KUBE_REGISTRY", "").rstrip("/")
        self.capabilities = frozenset({Capability.BUILD}) if self.registry else frozenset()
        self.delete_timeout = float(environment.get("ENVKIT_KUBE_DELETE_TIMEOUT") or 120)
        self.start_timeout = float(environment.get("ENVKIT_KUBE_START_TIMEOUT") or 300)
        self.pending_grace = 10.0  # seconds a pod may be held back (pulling, unschedulable) before it is an error
        self._specs: dict[str, ContainerSpec] = {}
        self._namespaces: set[str] = set()
        self._forwards: dict[str, dict[PortKey, Forward]] = {}
        self._lock = threading.Lock()

    def ping(self) -> None:
        self.api.call("GET", "/version")

    def close(self) -> None:
        for pod in list(self._forwards):
            self._stop_forwards(pod)

    # -- images: the kubelet pulls ------------------------------------------------------------------
    def _image(self, tag: str) -> str:
        return f"{self.registry}/{tag}" if self.registry and tag.startswith("envkit/") else tag

    def image_exists(self, tag: str) -> bool:
        return True  # the cluster pulls on start; a missing image is the pod's ErrImagePull, reported then

    def pull_image(self, tag: str) -> None:
        return None

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        raise Unsupported(f"engine kubernetes cannot build {spec.tag}: build and push it to {self.registry or 'a registry'}")

    def list_images(self, labels: Mapping[str, str | None]) -> list[ImageInfo]:
        return []

    def remove_image(self, tag: str) -> None:
        return None

    # -- the run's namespace, networks and volumes ------------------------------------------------
    def _ensure_namespace(self, labels: Mapping[str, str]) -> str:
        run = labels.get(L.RUN, "")
        ns = K.namespace_name(run)
        with self._lock:
            if ns in self._namespaces:
                return ns
        stamp = {k: labels[k] for k in RUN_KEYS if k in labels}
        stamp.update({k: v for k, v in labels.items() if k.startswith((L.OUTPUT_PREFIX, L.SECRET_PREFIX))})
        try:
            self.api.call("POST", "/api/v1/namespaces", body=K.namespace(run, stamp))
        except Conflict:  # made by an earlier call of this run, or another run's whose id maps to the same name
            there = K.metadata_labels(self.api.call("GET", f"/api/v1/namespaces/{ns}").get("metadata") or {})
            if there.get(L.RUN) != run:
                owner = f"run {there[L.RUN]}" if L.RUN in there else "not made by envkit"
                raise Conflict(f"namespace {ns} exists and is not run {run}'s ({owner}): choose another --name") from None
        for policy in baseline(stamp, ns):
            self._create(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy)
        with self._lock:
            self._namespaces.add(ns)
        return ns

    def _create(self, path: str, body: dict[str, Any]) -> None:
        """Create ``body``; one of that name already there (a retried call, another replica's Service) is fine."""
        with contextlib.suppress(Conflict):
            self.api.call("POST", path, body=body)

    def create_network(self, spec: NetworkSpec) -> str:
        labels = dict(spec.labels)
        ns = self._ensure_namespace(labels)
        run_labels = {k: labels[k] for k in RUN_KEYS if k in labels}
        for policy in network_policy(labels.get(L.NETWORK, spec.name), spec.internal, run_labels, ns):
            self._create(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy)
        return f"{NS_PREFIX}{ns}"

    def create_volume(self, spec: VolumeSpec) -> str:
        labels = dict(spec.labels)
        ns = self._ensure_namespace(labels)
        if labels.get(L.ROLE) == "claim":  # a run name's claim (envkit.claim): a ConfigMap, created atomically per name
            meta = K.metadata(K.dns_label(spec.name), labels, ns)
            self._create(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})
            return f"{ns}/{CLAIM}/{meta['name']}"
        claim = K.pvc(spec.name, labels, ns)
        self._create(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", claim)
        return f"{ns}/{claim['metadata']['name']}"

    # -- containers as pods -----------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        binds = [m.source for m in spec.mounts if m.type == "bind"]
        if binds:
            raise Unsupported(f"engine kubernetes cannot mount host paths ({spec.name}: {', '.join(binds)})")
        if spec.network_mode:
            raise Unsupported(f"engine kubernetes cannot {Capability.SHARED_NETNS.value} ({spec.name})")
        ns = self._ensure_namespace(dict(spec.labels))
        ident = f"{ns}/{K.dns_label(spec.name, 253)}"
        self._specs[ident] = spec
        return ident

    def start_container(self, container_id: str) -> None:
        spec = self._specs.get(container_id)
        if spec is None:
            self.inspect_container(container_id)  # NotFound for one that does not exist
            return  # a pod runs from its creation on
        ns, pod_name = container_id.split("/", 1)
        pod, values = K.pod(spec, ns, self._image(spec.image))
        run_labels = {k: v for k, v in spec.labels if k in RUN_KEYS}
        if values:
            self._create(f"/api/v1/namespaces/{ns}/secrets", {**K.secret(values, run_labels, ns),
                                                               "metadata": K.metadata(f"{pod_name}-env", run_labels, ns)})
        self.api.call("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
        del self._specs[container_id]
        labels = dict(spec.labels)
        ports = sorted({(p.container.number, p.container.protocol) for p in spec.ports})
        for attachment in spec.networks:
            for alias in attachment.aliases:
                pick = {L.RUN: labels.get(L.RUN, ""), L.SERVICE: labels.get(L.SERVICE, "")}
                if alias == f"{labels.get(L.SERVICE)}-{labels.get(L.REPLICA)}":
                    pick[L.REPLICA] = labels.get(L.REPLICA, "")
                if K.is_dns_label(alias):
                    self._create(f"/api/v1/namespaces/{ns}/services",
                                 K.headless_service(alias, pick, ports, run_labels, ns))
        self._await_running(container_id)

    def _pod(self, container_id: str) -> dict[str, Any]:
        ns, name = container_id.split("/", 1) if "/" in container_id else ("", container_id)
        if not ns:
            raise NotFound(f"container {container_id}: no such container")
        return dict(self.api.call("GET", f"/api/v1/namespaces/{ns}/pods/{path_name(name)}"))

    def _await_running(self, container_id: str) -> None:
        """Until the pod runs (or already ended); one the scheduler or the kubelet holds back is an error
        with their reason once it has lasted 10 s (an image that cannot be pulled, no node that fits)."""
        began = time.monotonic()
        reason = ""
        while time.monotonic() - began < self.start_timeout:
            pod = self._pod(container_id)
            current = state(pod, {})
            if current.status in ("running", "exited"):
                return
            reason = waiting_reason(pod)
            if reason and time.monotonic() - began >= self.pending_grace:
                break
            time.sleep(0.25)
        raise EngineError(f"start container {container_id}: its pod did not start: {reason or 'still pending'}")

    def inspect_container(self, container_id: str) -> ContainerState:
        spec = self._specs.get(container_id)
        if spec is not None:
            return ContainerState(container_id, spec.name, "created", None, None, {}, {}, dict(spec.labels),
                                  finished_at="", environment=dict(spec.environment), mounts=spec.mounts)
        pod = self._pod(container_id)
        running = state(pod, {})
        return state(pod, self._ports(container_id, pod) if running.running else {})

    def _ports(self, container_id: str, pod: Mapping[str, Any]) -> dict[PortKey, Endpoint]:
        ports = [PortKey(int(p["containerPort"]), "udp" if p.get("protocol") == "UDP" else "tcp")
                 for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
        with contextlib.suppress(ValueError, TypeError, AttributeError):  # a probe's port, published or not: probed here
            probe_port = json.loads(K.metadata_labels(pod.get("metadata") or {}).get(L.PROBE, "{}")).get("port")
            if isinstance(probe_port, int) and PortKey(probe_port) not in ports:
                ports.append(PortKey(probe_port))
        with self._lock:
            mine = self._forwards.setdefault(container_id, {})
            for key in ports:
                if key not in mine and key.protocol == "tcp":  # port-forward carries TCP only
                    mine[key] = Forward(self._stream_opener(container_id, key.number), f"{container_id}:{key.number}")
            return {k: Endpoint("127.0.0.1", f.port) for k, f in mine.items()}

    def _stream_opener(self, container_id: str, port: int) -> Callable[[], Stream]:
        def open_stream() -> Stream:
            from kubernetes import client
            from kubernetes.stream import portforward

            ns, name = container_id.split("/", 1)
            core = client.CoreV1Api(self.api.client)
            forward = portforward(core.connect_get_namespaced_pod_portforward, name, ns, ports=str(port))
            sock: Stream = forward.socket(port)
            return sock
        return open_stream

    def _stop_forwards(self, container_id: str) -> None:
        with self._lock:
            forwards = self._forwards.pop(container_id, {})
        for f in forwards.values():
            f.stop()

    def wait_container(self, container_id: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            current = state(self._pod(container_id), {})
            if current.status == "exited":
                return current.exit_code
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.25, max(deadline - time.monotonic(), 0.01)))

    # -- exec and logs ------------------------------------------------------------------------------
    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        if user:
            raise Unsupported(f"engine kubernetes cannot exec as user {user} (the exec API runs as the container's user)")
        from kubernetes import client
        from kubernetes.stream import stream

        ns, name = container_id.split("/", 1)
        core = client.CoreV1Api(self.api.client)
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, name, ns, command=list(command), stderr=True, stdin=False,
                        stdout=True, tty=False, _preload_content=False)
        except Exception as exc:
            raise EngineError(f"exec in {container_id}: {exc}") from exc
        try:
            ws.run_forever(timeout=timeout)
            code = ws.returncode if not ws.is_open() else -1  # before read_all(), which empties every channel
            output = ws.read_all()
        finally:
            ws.close()
            if ws.sock is not None:  # a close after the server's own leaves the socket open: shut it
                ws.sock.shutdown()
        return ExecResult(int(code if code is not None else -1), output)

    def _log(self, container_id: str, query: dict[str, Any], stream: bool = False) -> Any:
        ns, name = container_id.split("/", 1)
        return self.api.call("GET", f"/api/v1/namespaces/{ns}/pods/{path_name(name)}/log", query, raw=not stream,
                             stream=stream)

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        if until is not None:
            return "".join(f"{line.text}\n" for line in self.log_lines(container_id, tail, since, until))
        try:
            return str(self._log(container_id, log_query(tail, since, False)))
        except EngineError as exc:  # a pod still pending has no log yet
            if "waiting to start" in str(exc) or "ContainerCreating" in str(exc):
                return ""
            raise

    def log_lines(self, container_id: str, tail: int | None = None, since: float | None = None,
                  until: float | None = None) -> list[LogLine]:
        text = str(self._log(container_id, log_query(tail, since, True)))
        lines = [log_line(raw) for raw in text.splitlines() if raw]
        return [x for x in lines if (since is None or x.at.timestamp() >= since) and (until is None or x.at.timestamp() <= until)]

    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]:
        return (f"{x.text}\n" for x in self.follow_log_lines(container_id, tail))

    def follow_log_lines(self, container_id: str, tail: int | None = None,
                         since: float | None = None) -> Iterator[LogLine]:
        response = self._log(container_id, {**log_query(tail, since, True), "follow": True}, stream=True)
        buffer = b""
        try:
            for chunk in response.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    yield log_line(raw.decode("utf-8", "replace"))
        finally:
            response.release_conn()

    # -- discovery and removal, by labels -----------------------------------------------------------
    def _list(self, path: str, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        query = {"labelSelector": selector(labels, K.label_ok)}
        items = self.api.call("GET", path, query).get("items") or []
        return [dict(i) for i in items if matches(i.get("metadata") or {}, labels)]

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerState]:
        return [state(p, {}) for p in self._list("/api/v1/pods", labels)]

    def list_resources(self, labels: Mapping[str, str | None]) -> list[Resource]:
        out = [Resource("container", s.id, s.name, s.labels) for s in self.list_containers(labels)]
        for claim in self._list("/api/v1/persistentvolumeclaims", labels):
            meta = claim["metadata"]
            out.append(Resource("volume", f"{meta['namespace']}/{meta['name']}", meta["name"], K.metadata_labels(meta)))
        for held in self._list("/api/v1/configmaps", {**labels, L.ROLE: "claim"}):
            meta = held["metadata"]
            out.append(Resource("volume", f"{meta['namespace']}/{CLAIM}/{meta['name']}", meta["name"],
                                K.metadata_labels(meta)))
        for ns in self._list("/api/v1/namespaces", labels):
            meta = ns["metadata"]
            out.append(Resource("network", f"{NS_PREFIX}{meta['name']}", meta["name"], K.metadata_labels(meta)))
        return out

    def remove_container(self, container_id: str, grace: float) -> None:
        self._stop_forwards(container_id)
        if self._specs.pop(container_id, None) is not None:
            return
        ns, name = container_id.split("/", 1)
        for path in (f"/api/v1/namespaces/{ns}/pods/{path_name(name)}", f"/api/v1/namespaces/{ns}/secrets/{name}-env"):
            with contextlib.suppress(NotFound):
                self.api.call("DELETE", path, {"gracePeriodSeconds": int(grace)})

    def remove_network(self, network_id: str) -> None:
        """Delete the run's namespace (everything in it goes with it) and wait until it is gone."""
        ns = network_id.removeprefix(NS_PREFIX)
        try:
            self.api.call("DELETE", f"/api/v1/namespaces/{ns}", {"propagationPolicy": "Background"})
        except NotFound:
            return
        with self._lock:
            self._namespaces.discard(ns)
        deadline = time.monotonic() + self.delete_timeout
        while True:
            try:
                found = self.api.call("GET", f"/api/v1/namespaces/{ns}")
            except NotFound:
                return
            if time.monotonic() >= deadline:
                raise EngineError(stuck(ns, found, self.delete_timeout))
            time.sleep(0.5)

    def remove_volume(self, name: str) -> None:
        ns, _, claim = name.partition("/")
        kind = "persistentvolumeclaims"
        if claim.startswith(f"{CLAIM}/"):
            kind, claim = "configmaps", claim.removeprefix(f"{CLAIM}/")
        with contextlib.suppress(NotFound):
            self.api.call("DELETE", f"/api/v1/namespaces/{ns}/{kind}/{path_name(claim)}")


def open_backend(environment: Mapping[str, str]) -> Backend:
    """The engine table's entry point (see ``envkit.backends.connect``)."""
    return KubernetesBackend(environment)

