"""Kubernetes objects as plain data, from envkit's engine-neutral specs. Pure: no client, no I/O.

Both ``envkit render --engine kubernetes`` (``envkit.kube_render``: Deployments, StatefulSets, Jobs for
``kubectl apply``) and the client path (``envkit.backends.kubernetes``: one Pod per envkit replica) build
their objects here, so the two agree on names, labels, probes, policies and secrets.

Labels and annotations: a Kubernetes label value is at most 63 characters of ``[A-Za-z0-9._-]``. envkit's
labels that fit stay labels (run, service, replica, role, kind, managed ...: what selectors need); the
others — owner (``user@host:pid``), times, paths, probe JSON, output templates, dependency JSON — go to
annotations under the same key. ``metadata_labels`` reads both back as one mapping.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from envkit import labels as L
from envkit.backends.types import ContainerSpec, MountSpec, Placement
from envkit.blueprint.model import Probe

__all__ = [
    "CONTAINER_ANNOTATION",
    "NETWORK_LABEL",
    "container",
    "dns_label",
    "headless_service",
    "is_dns_label",
    "label_ok",
    "metadata",
    "metadata_labels",
    "namespace",
    "namespace_name",
    "network_label",
    "pod",
    "pod_volumes",
    "pvc",
    "readiness_probe",
    "secret",
    "spread",
]

_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
_LABEL_KEY = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
#: the label a pod carries for each blueprint network it is on (``io.envkit.network.backend: "true"``)
NETWORK_LABEL = f"{L.NS}.network."
#: the annotation of a pod with envkit's own name of its container (``envkit-RUN-api-1``)
CONTAINER_ANNOTATION = f"{L.NS}.container"
SECRETS_OBJECT = "envkit-secrets"


def _short(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut with a hash of the whole so names stay unique."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[:limit - 9].rstrip('-.')}-{digest}"


def dns_label(text: str, limit: int = 63) -> str:
    """An object name (RFC 1123 label) made from ``text``: lowercase, ``_`` and ``.`` as ``-``."""
    name = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-") or "x"
    return _short(name, limit).strip("-")


def is_dns_label(text: str) -> bool:
    """Whether ``text`` can be a Service's name (RFC 1035 label): the DNS name pods look up."""
    return bool(_DNS_LABEL.match(text))


def namespace_name(run_id: str) -> str:
    """The run's namespace: ``envkit-<run>`` as a DNS label (``_``/``.`` become ``-``; long ids cut + hashed)."""
    return dns_label(f"envkit-{run_id}")


def network_label(network: str) -> str:
    return _short(f"{NETWORK_LABEL}{network}", 63)


def label_ok(key: str, value: str) -> bool:
    """Whether Kubernetes takes ``key: value`` as a label (else envkit keeps it as an annotation)."""
    name = key.rsplit("/", 1)[-1]
    return bool(_LABEL_NAME.match(name)) and len(key) <= 253 and bool(_LABEL_VALUE.match(value))


def metadata(name: str, labels: Mapping[str, str], namespace: str | None = None) -> dict[str, Any]:
    """``metadata`` with each envkit label as a label where Kubernetes takes it, else as an annotation."""
    lab = {k: v for k, v in labels.items() if label_ok(k, v)}
    notes = {k: v for k, v in labels.items() if k not in lab}
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["labels"] = dict(sorted(lab.items()))
    if notes:
        out["annotations"] = dict(sorted(notes.items()))
    return out


def metadata_labels(meta: Mapping[str, Any]) -> dict[str, str]:
    """envkit's labels of an object as envkit wrote them: its labels and annotations in one mapping."""
    return {**dict(meta.get("annotations") or {}), **dict(meta.get("labels") or {})}


def namespace(run_id: str, stamp: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace_name(run_id), stamp)}


def readiness_probe(probe: Probe | None) -> tuple[dict[str, Any] | None, str]:
    """The readinessProbe of ``probe``, and what it cannot carry ("" when it carries everything).

    Polled every second (as envkit polls), three failures in a row mark the pod not ready; a
    readinessProbe never restarts anything."""
    if probe is None or probe.kind == "none":  # Kubernetes runs no image HEALTHCHECK anyway
        return None, ""
    timing: dict[str, Any] = {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 1}
    if probe.kind == "tcp" and probe.port is not None:
        return {"tcpSocket": {"port": probe.port}, **timing}, ""
    if probe.kind == "http" and probe.port is not None:
        lost = []
        if probe.status is not None and not 200 <= probe.status < 400:
            lost.append(f"status {probe.status} (Kubernetes counts 200-399 as ready)")
        elif probe.status is not None:
            lost.append(f"status {probe.status} exactly (Kubernetes counts 200-399 as ready)")
        if probe.body:
            lost.append("a body pattern")
        return {"httpGet": {"path": probe.path, "port": probe.port}, **timing}, "; ".join(lost)
    if probe.kind == "exec":
        return {"exec": {"command": list(probe.command)}, **timing}, ""
    if probe.kind == "log":
        return None, f"a log-line probe /{probe.pattern}/ (Kubernetes has no log readiness; none rendered)"
    return None, "the image's HEALTHCHECK (Kubernetes ignores it; no readinessProbe rendered)"


def _user(user: str | None) -> dict[str, Any]:
    if not user:
        return {}
    uid, _, gid = user.partition(":")
    out: dict[str, Any] = {}
    if uid.isdigit():
        out["runAsUser"] = int(uid)
    if gid.isdigit():
        out["runAsGroup"] = int(gid)
    return out


def _cpu(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def container(spec: ContainerSpec, name: str, probe: Probe | None,
              secret_env: Mapping[str, str] = {}) -> dict[str, Any]:
    """The pod's container for ``spec``. Docker's entrypoint is Kubernetes' ``command``, Docker's
    command its ``args``. ``secret_env``: env key → key in the run's Secret (its value is read from there)."""
    out: dict[str, Any] = {"name": name, "image": spec.image, "imagePullPolicy": "IfNotPresent"}
    if spec.entrypoint is not None:
        out["command"] = list(spec.entrypoint)
    if spec.command is not None:
        out["args"] = list(spec.command)
    if spec.working_dir:
        out["workingDir"] = spec.working_dir
    env: list[dict[str, Any]] = []
    for key, value in spec.environment:
        if key in secret_env:
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": SECRETS_OBJECT, "key": secret_env[key]}}})
        else:
            env.append({"name": key, "value": value})
    if env:
        out["env"] = env
    if spec.ports:
        out["ports"] = [{"containerPort": p.container.number, "protocol": p.container.protocol.upper()}
                        for p in spec.ports]
    limits: dict[str, Any] = {}
    if spec.memory:
        limits["memory"] = str(spec.memory)
    if spec.cpus:
        limits["cpu"] = _cpu(spec.cpus)
    if limits:  # requests default to the limits: the pod is scheduled where they fit
        out["resources"] = {"limits": limits}
    security: dict[str, Any] = {**_user(spec.user)}
    if spec.privileged:
        security["privileged"] = True
    if spec.cap_add or spec.cap_drop:
        # Kubernetes' spelling: NET_ADMIN, ALL (a blueprint may write Docker's cap_net_admin or CAP_CHOWN;
        # the runtime puts CAP_ in front of a name as it is, and reads only ALL as every one)
        security["capabilities"] = {k: [c.upper().removeprefix("CAP_") for c in v]
                                    for k, v in (("add", spec.cap_add), ("drop", spec.cap_drop)) if v}
    if spec.read_only:
        security["readOnlyRootFilesystem"] = True
    if security:
        out["securityContext"] = security
    mounts = [{"name": _volume_name(m, i), "mountPath": m.target, **({"readOnly": True} if m.read_only else {})}
              for i, m in enumerate(spec.mounts)]
    mounts += [{"name": f"tmpfs-{i}", "mountPath": path} for i, (path, _) in enumerate(spec.tmpfs)]
    if mounts:
        out["volumeMounts"] = mounts
    ready, _ = readiness_probe(probe)
    if ready is not None:
        out["readinessProbe"] = ready
    return out


def _volume_name(mount: MountSpec, index: int) -> str:
    return dns_label(f"v{index}-{mount.source}", 63)


def _tmpfs_size(options: str) -> str | None:
    for opt in options.split(","):
        key, _, value = opt.partition("=")
        if key.strip() == "size" and value.strip():
            size = value.strip().lower()
            return size[:-1] + {"k": "Ki", "m": "Mi", "g": "Gi"}[size[-1]] if size[-1] in "kmg" else size
    return None


def pod_volumes(spec: ContainerSpec) -> list[dict[str, Any]]:
    """The pod's volumes: a PVC for each named volume (``pvc`` makes it), memory for each tmpfs."""
    out: list[dict[str, Any]] = [{"name": _volume_name(m, i), "persistentVolumeClaim": {"claimName": dns_label(m.source)}}
                                 for i, m in enumerate(spec.mounts) if m.type == "volume"]
    for i, (_, options) in enumerate(spec.tmpfs):
        size = _tmpfs_size(options)
        out.append({"name": f"tmpfs-{i}", "emptyDir": {"medium": "Memory", **({"sizeLimit": size} if size else {})}})
    return out


def pvc(name: str, labels: Mapping[str, str], ns: str, size: str = "1Gi") -> dict[str, Any]:
    """A run's volume: ReadWriteOnce (every storage class has it), the cluster's default storage class."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(dns_label(name), labels, ns),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def headless_service(name: str, selector: Mapping[str, str], ports: Sequence[tuple[int, str]], labels: Mapping[str, str],
                     ns: str) -> dict[str, Any]:
    """A DNS name for the ready pods ``selector`` picks (no virtual IP: ``name`` resolves to their addresses)."""
    spec: dict[str, Any] = {"clusterIP": "None", "selector": dict(sorted(selector.items())), "publishNotReadyAddresses": False}
    if ports:
        spec["ports"] = [{"name": f"{proto.lower()}-{port}", "port": port, "targetPort": port, "protocol": proto.upper()}
                         for port, proto in ports]
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, labels, ns), "spec": spec}


def secret(values: Mapping[str, str], labels: Mapping[str, str], ns: str) -> dict[str, Any]:
    """The run's secret values (``stringData``): pods read them through ``secretKeyRef``, never from labels."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata(SECRETS_OBJECT, labels, ns), "type": "Opaque",
            "stringData": dict(sorted(values.items()))}


def spread(placement: Placement | None, selector: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """``placement.preferences`` as topologySpreadConstraints over the pods ``selector`` picks, and the
    labels that cannot be: Swarm's ``spread: node.labels.KEY`` is a soft, even spread over the values of
    the node label KEY, which is ``maxSkew: 1, whenUnsatisfiable: ScheduleAnyway`` over ``topologyKey: KEY``
    (a Kubernetes node label of that name). ``engine.labels.*`` (Docker engine labels) have no counterpart."""
    out: list[dict[str, Any]] = []
    lost: list[str] = []
    for label in placement.spread if placement else ():
        key = label.removeprefix("node.labels.")
        if key == label or not _LABEL_KEY.match(key):
            lost.append(label)
            continue
        out.append({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": dict(selector)}})
    return out, lost


def pod(spec: ContainerSpec, ns: str, image: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The client path's pod for one envkit container, and its own Secret's values: the environment
    entries a secret locator (``io.envkit.secret.NAME = SERVICE/KEY``) names. ``restartPolicy: Never``:
    an exit is seen as on one engine."""
    labels = dict(spec.labels)
    service = labels.get(L.SERVICE, "main")
    prefix = f"envkit-{labels.get(L.RUN, '')}-"
    secret_keys = {v.split("/")[1] for k, v in labels.items()
                   if k.startswith(L.SECRET_PREFIX) and "/" in v and v.split("/")[0] == service}
    values = {f"{service}.{k}": v for k, v in spec.environment if k in secret_keys}
    networks = {network_label(a.network.removeprefix(prefix)): "true" for a in spec.networks}
    meta = metadata(dns_label(spec.name, 253), {**labels, CONTAINER_ANNOTATION: spec.name, **networks}, ns)
    main = container(spec, dns_label(service), None, {k: f"{service}.{k}" for k in secret_keys})
    main["image"] = image
    for entry in main.get("env", []):  # the pod's own Secret, not the rendered run's
        if "valueFrom" in entry:
            entry["valueFrom"]["secretKeyRef"]["name"] = f"{meta['name']}-env"
    body: dict[str, Any] = {"restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
                            "terminationGracePeriodSeconds": int(spec.stop_timeout or 0), "containers": [main]}
    if spec.hostname:
        body["hostname"] = dns_label(spec.hostname)
    volumes = pod_volumes(spec)
    if volumes:
        body["volumes"] = volumes
    constraints, _ = spread(spec.placement, {k: labels[k] for k in (L.RUN, L.SERVICE) if k in labels})
    if constraints:
        body["topologySpreadConstraints"] = constraints
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}, values
