"""The Kubernetes backend's two translations: requests through the client's REST layer, and a pod as a
``ContainerState``. Only ``envkit.backends.kubernetes`` uses this module.

Requests go through the official client's ``ApiClient`` (``param_serialize`` + ``call_api``: its
configuration, authentication, TLS and proxy settings) with plain JSON bodies and answers, so that
envkit reads the API server's own objects and Status answers. Errors are translated once, here:
404 → NotFound, 409 → Conflict, 429 and 5xx → Transient, 401/403 → EngineUnavailable, an unreachable
server → EngineUnavailable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from envkit import retry
from envkit.backends._kube_objects import CONTAINER_ANNOTATION, metadata_labels
from envkit.backends.types import ContainerState, ContainerStatus, Endpoint, LogLine, PortKey
from envkit.errors import Conflict, EngineError, EngineUnavailable, NotFound, Transient

__all__ = ["Api", "log_line", "log_query", "matches", "selector", "state", "stuck", "waiting_reason"]


class Api:
    """JSON requests to one API server through ``client`` (a ``kubernetes.client.ApiClient``)."""

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.where = where

    def call(self, method: str, path: str, query: Mapping[str, str | int | bool] | None = None,
             body: Any = None, *, raw: bool = False, stream: bool = False, timeout: float | None = 30) -> Any:
        """The answer's JSON (``raw``: its text; ``stream``: the open urllib3 response), or an envkit error.
        Transient answers (429, 5xx) are retried by envkit's one policy; a create retried after one that
        did succeed answers 409, which the backend takes as "already there"."""
        return retry.call(lambda: self._once(method, path, query, body, raw, stream, timeout))

    def _once(self, method: str, path: str, query: Mapping[str, str | int | bool] | None, body: Any, raw: bool,
              stream: bool, timeout: float | None) -> Any:
        headers = {"Accept": "application/json" if not raw else "*/*"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        items = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items()]
        what = f"{method} {path}"
        try:
            params = self.client.param_serialize(method=method, resource_path=path, query_params=items or None,
                                                 header_params=headers, body=body, auth_settings=["BearerToken"])
            answer = self.client.call_api(*params, _request_timeout=None if stream else timeout)
        except Exception as exc:  # urllib3's connection errors, TLS errors: the server cannot be reached
            if isinstance(exc, EngineError):
                raise
            code = getattr(exc, "status", None)
            if isinstance(code, int) and code > 0:  # the client's ApiException (a Retry-After answer)
                raise _error(code, what, str(getattr(exc, "body", "") or exc), self.where) from exc
            raise EngineUnavailable(f"engine kubernetes: cannot reach the API server {self.where} ({exc})") from exc
        status = int(answer.status)
        if stream and status < 300:
            return answer.response
        data = answer.read()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if status >= 300:
            raise _error(status, what, text, self.where)
        if raw:
            return text
        return json.loads(text) if text else {}


def _error(status: int, what: str, text: str, where: str) -> EngineError | EngineUnavailable:
    try:
        message = str(json.loads(text).get("message") or text)
    except (ValueError, AttributeError):
        message = text.strip() or f"HTTP {status}"
    message = f"{what}: {message}"
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 429 or status >= 500:
        return Transient(message)
    if status in (401, 403):
        return EngineUnavailable(f"engine kubernetes: the API server {where} refused: {message}")
    return EngineError(message)


def path_name(name: str) -> str:
    return quote(name, safe="")


def selector(labels: Mapping[str, str | None], fits: Any) -> str:
    """The label selector the server can apply (``fits(key, value)``: Kubernetes takes it as a label);
    the caller filters the rest (values kept in annotations) on what comes back."""
    parts = []
    for key, value in sorted(labels.items()):
        if value is None and fits(key, "x"):
            parts.append(key)
        elif value is not None and fits(key, value):
            parts.append(f"{key}={value}")
    return ",".join(parts)


def matches(meta: Mapping[str, Any], labels: Mapping[str, str | None]) -> bool:
    have = metadata_labels(meta)
    return all(k in have and (v is None or have[k] == v) for k, v in labels.items())


def _stamp(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return text


def state(pod: Mapping[str, Any], ports: Mapping[PortKey, Endpoint]) -> ContainerState:
    """What envkit knows of its container from ``pod`` (its one container); ``ports``: the local
    port-forwards of its ports (empty unless it runs)."""
    meta = pod.get("metadata") or {}
    labels = metadata_labels(meta)
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    statuses = status.get("containerStatuses") or []
    current = (statuses[0].get("state") or {}) if statuses else {}
    ended = current.get("terminated") or {}
    kind: ContainerStatus
    if meta.get("deletionTimestamp"):
        kind = "removing"
    elif ended or phase in ("Succeeded", "Failed"):
        kind = "exited"
    elif "running" in current:
        kind = "running"
    elif phase == "Pending":
        kind = "created"
    else:
        kind = "unknown"
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    exit_code = ended.get("exitCode") if ended else None
    spec_env = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("env") or []
    address = str(status.get("podIP") or "")
    return ContainerState(
        id=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        name=labels.get(CONTAINER_ANNOTATION, str(meta.get("name", ""))), status=kind,
        exit_code=int(exit_code) if exit_code is not None else None,
        health=None if kind != "running" else ("healthy" if ready else "starting"),
        addresses={str(meta.get("namespace", "")): address} if address else {},
        ports=dict(ports) if kind == "running" else {}, labels=labels,
        started_at=_stamp((current.get("running") or ended).get("startedAt")),
        oom_killed=ended.get("reason") == "OOMKilled" if kind == "exited" else False,
        finished_at=_stamp(ended.get("finishedAt")) or "",
        environment={e["name"]: str(e.get("value", "")) for e in spec_env if "value" in e},
    )


def waiting_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is not running yet, in the kubelet's or the scheduler's words ("" when it just starts)."""
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return f"{c.get('reason', 'Unschedulable')}: {c.get('message', '')}".rstrip(": ")
    return ""


def stuck(ns: str, found: Mapping[str, Any], waited: float) -> str:
    """Why namespace ``ns`` is still there: its finalizers and the conditions the namespace controller set."""
    status = found.get("status") or {}
    finalizers = [*((found.get("spec") or {}).get("finalizers") or []),
                  *((found.get("metadata") or {}).get("finalizers") or [])]
    conditions = [f"{c.get('type')}: {c.get('message', '')}" for c in status.get("conditions") or []
                  if c.get("status") == "True"]
    why = f"finalizers {', '.join(finalizers)}" if finalizers else "no finalizers"
    return (f"namespace {ns} is stuck in {status.get('phase', 'Terminating')} after {waited:g}s ({why}"
            + (f"; {'; '.join(conditions)}" if conditions else "") + f"); see `kubectl get namespace {ns} -o yaml`")


def log_line(raw: str) -> LogLine:
    stamp, _, text = raw.partition(" ")
    try:
        at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00") if stamp.endswith("Z") else datetime.fromisoformat(stamp)
    except ValueError:
        return LogLine(datetime.now(UTC), raw)
    return LogLine(at.astimezone(UTC), text)


def log_query(tail: int | None, since: float | None, timestamps: bool) -> dict[str, Any]:
    """The query of a pod's log: the last ``tail`` lines, from ``since`` (a UNIX time) on."""
    query: dict[str, Any] = {"timestamps": timestamps}
    if tail is not None:
        query["tailLines"] = tail
    if since is not None:
        query["sinceTime"] = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return query
