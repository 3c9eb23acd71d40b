"""Reading Compose's value forms for ``envkit import``: ports, volumes, env files, healthchecks, durations.

Each function takes the Compose value as it stands in the file and returns envkit's form of it (the
short blueprint syntax where one exists) plus what it could not carry over, as text for a note.
Nothing here reads files: env files come in as text.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from envkit.blueprint.model import Probe
from envkit.blueprint.readers import parse_duration
from envkit.export import healthcheck_test

__all__ = [
    "CONDITIONS",
    "BlueprintDumper",
    "Healthcheck",
    "PortForm",
    "compose_duration",
    "definition",
    "depends",
    "healthcheck",
    "parse_env_file",
    "port_forms",
    "unescape",
    "volume_form",
]

CONDITIONS = {"service_started": "started", "service_healthy": "ready", "service_completed_successfully": "completed"}

# Compose's defaults for a healthcheck's timing (docs: interval 30s, timeout 30s, retries 3, start_period 0s)
INTERVAL, RETRIES, START_PERIOD = 30.0, 3, 0.0


def compose_duration(value: Any) -> float | None:
    """Compose durations (``1m30s``, ``500ms``, ``10s``, a number of seconds); ``us``/``ns`` too."""
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|µs|ns)", text)
        if m:
            return float(m.group(1)) / (1e6 if m.group(2) != "ns" else 1e9)
    return parse_duration(value)


@dataclass(frozen=True)
class PortForm:
    container: int
    protocol: str = "tcp"
    host: int | None = None
    host_ip: str | None = None  # None: as Compose's default (every interface)

    def blueprint(self, keep_host: bool) -> str | int:
        """The short blueprint form: an ephemeral port on 127.0.0.1 unless the host side is kept."""
        suffix = "" if self.protocol == "tcp" else f"/{self.protocol}"
        if not keep_host or (self.host is None and self.host_ip in (None, "127.0.0.1")):
            return self.container if not suffix else f"{self.container}{suffix}"
        ip = self.host_ip if self.host_ip is not None else "0.0.0.0"
        ip = f"[{ip}]" if ":" in ip else ip
        return f"{ip}:{self.host or ''}:{self.container}{suffix}"


def _range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def port_forms(value: Any) -> tuple[list[PortForm], str | None]:
    """One Compose port entry (short or long; ranges expanded) → its ports, or a reason it cannot be read."""
    if isinstance(value, bool):
        return [], f"cannot read port {value!r}"
    if isinstance(value, int):
        return [PortForm(value)], None
    if isinstance(value, dict):
        target = value.get("target")
        if not isinstance(target, int | str) or not str(target).isdigit():
            return [], "a long-form port needs a numeric 'target'"
        published = value.get("published")
        host, hosts = None, []
        if published not in (None, ""):
            hosts = _range(str(published)) if re.fullmatch(r"\d+(-\d+)?", str(published)) else []
            if not hosts:
                return [], f"cannot read published port {published!r}"
            host = hosts[0] or None
        host_ip = value.get("host_ip")
        form = PortForm(int(target), str(value.get("protocol") or "tcp"), host, str(host_ip) if host_ip else None)
        return [form], _one_of(str(published), hosts)
    if not isinstance(value, str):
        return [], f"cannot read port {value!r}"
    text, _, proto = value.strip().partition("/")
    ip: str | None = None
    if text.startswith("["):  # [::1]:8080:80
        ip, _, text = text[1:].partition("]")
        text = text.removeprefix(":")
    parts = text.split(":")
    if len(parts) == 3 and ip is None:
        ip = parts.pop(0) or None
    if len(parts) > 2 or not all(re.fullmatch(r"\d+(-\d+)?", p) for p in parts if p) or not parts[-1]:
        return [], f"cannot read port {value!r}"
    containers = _range(parts[-1])
    hosts = _range(parts[0]) if len(parts) == 2 and parts[0] else []
    if len(containers) == 1 and len(hosts) > 1:  # "9090-9091:8080": one port, on one free host port of a range
        return [PortForm(containers[0], proto or "tcp", hosts[0], ip)], _one_of(parts[0], hosts)
    if hosts and len(hosts) != len(containers):
        return [], f"port {value!r}: the host and container ranges differ in length"
    return [PortForm(c, proto or "tcp", hosts[i] if hosts else None, ip) for i, c in enumerate(containers)], None


def _one_of(written: str, hosts: list[int]) -> str | None:
    """The note for a range of host ports given to one container port (Compose takes a free one)."""
    if len(hosts) < 2:
        return None
    return f"host ports {written}: Compose takes a free one of the range; envkit the first, {hosts[0]}"


def volume_form(value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """One Compose volume entry → ``{type, source, target, read_only}`` (type also ``tmpfs``, and an
    anonymous volume has no source), or None and why."""
    notes: list[str] = []
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 1:
            return {"type": "volume", "source": None, "target": parts[0], "read_only": False}, notes
        if len(parts) > 3:
            return None, [f"cannot read volume {value!r}"]
        source, target = parts[0], parts[1]
        if not source or not target:  # Compose: "empty section between colons"
            return None, [f"cannot read volume {value!r} (an empty {'source' if not source else 'target'}: is a "
                          "variable unset?)"]
        options = parts[2].split(",") if len(parts) == 3 else []
        other = [o for o in options if o not in ("ro", "rw")]
        if other:
            notes.append(f"mount options {','.join(other)} of {value!r} are not carried over")
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        return {"type": kind, "source": source, "target": target, "read_only": "ro" in options}, notes
    if not isinstance(value, dict) or not isinstance(value.get("target"), str):
        return None, [f"cannot read volume {value!r} (a long-form volume needs 'target')"]
    kind = value.get("type", "volume")
    if kind not in ("volume", "bind", "tmpfs"):
        return None, [f"a {kind} mount has no envkit equivalent"]
    extra = sorted(set(value) - {"type", "source", "target", "read_only", "tmpfs", "bind", "volume"})
    for key in ("bind", "volume"):
        if value.get(key):
            extra.append(f"{key}.{','.join(sorted(value[key]))}")
    if extra:
        notes.append(f"volume {value['target']}: {', '.join(extra)} not carried over")
    out = {"type": kind, "source": value.get("source"), "target": value["target"],
           "read_only": bool(value.get("read_only"))}
    if kind == "tmpfs":
        size = (value.get("tmpfs") or {}).get("size")
        out["options"] = f"size={size}" if size else ""
    return out, notes


def parse_env_file(text: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``KEY=value`` lines as Compose reads them: comments, ``export``, quotes, a bare ``KEY`` (taken
    from the environment: None). Returns the pairs and the lines it could not read. Values are in the
    blueprint's syntax: Compose does not interpolate a single-quoted value, so its ``$`` is written ``$$``."""
    pairs: list[tuple[str, str | None]] = []
    bad: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            bad.append(f"line {number}: {raw.strip()[:60]}")
            continue
        if not eq:
            pairs.append((key, None))
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            else:  # literal: ${VAR} in it is text
                value = value.replace("$", "$$")
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        pairs.append((key, value))
    return pairs, bad


@dataclass(frozen=True)
class Healthcheck:
    """What a Compose healthcheck becomes: a probe in the blueprint's form (None: no probe) and notes."""

    ready: dict[str, Any] | str | None
    notes: tuple[str, ...] = ()


def _test_words(test: Any) -> list[str] | None:
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    if isinstance(test, list) and test and all(isinstance(w, str | int | float) for w in test):
        return [str(w) for w in test]
    return None


def _exported_probe(words: list[str]) -> Probe | None:
    """The envkit probe whose ``envkit export`` healthcheck is exactly ``words`` (tcp and http come back as
    themselves, not as the program or client export wrote for them)."""
    candidates: list[Probe] = []
    text = " ".join(words)
    for m in re.finditer(r"'127\.0\.0\.1', (\d+)", text):
        port = int(m.group(1))
        candidates.append(Probe("tcp", port=port))
        http = re.search(r"c\.request\('GET', (?P<path>.+?)\); r = c\.getresponse\(\); sys\.exit\(0 if (?P<ok>.+) else 1\)$",
                         words[-1])
        if http:
            try:
                path = ast.literal_eval(http.group("path").replace("$$", "$"))
                status = re.match(r"r\.status == (\d+)", http.group("ok"))
                body = re.search(r"re\.search\((.+?), r\.read\(65536\)", http.group("ok"))
                candidates.append(Probe("http", port=port, path=str(path),
                                        status=int(status.group(1)) if status else None,
                                        body=str(ast.literal_eval(body.group(1).replace("$$", "$"))) if body else None))
            except (ValueError, SyntaxError):
                pass
    if len(words) >= 6 and words[1] in ("redis-cli", "pg_isready") and "-p" in words and words[words.index("-p") + 1].isdigit():
        candidates.append(Probe("tcp", port=int(words[words.index("-p") + 1])))
    return next((p for p in candidates if healthcheck_test(p) == words), None)


def _dollars(text: str) -> str:
    """A value read out of a program, written back into the blueprint: a literal ``$`` is ``$$`` there."""
    return text.replace("$", "$$")


def healthcheck(spec: Any) -> Healthcheck:
    """A Compose ``healthcheck:`` → envkit's ``ready:``. The deadline is Compose's own: start_period +
    interval * retries (its defaults: 0s + 30s * 3)."""
    if not isinstance(spec, dict):
        return Healthcheck(None, (f"cannot read healthcheck {spec!r}",))
    if spec.get("disable"):  # the image's own HEALTHCHECK is turned off, not only Compose's
        return Healthcheck({"healthcheck": False})
    notes: list[str] = []
    interval = compose_duration(spec.get("interval", INTERVAL))
    start = compose_duration(spec.get("start_period", START_PERIOD))
    retries = spec.get("retries", RETRIES)
    if interval is None or start is None or not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
        notes.append("healthcheck timing unreadable; envkit's default deadline (60s) applies")
        deadline = 60.0
    else:
        deadline = start + interval * retries
    words = _test_words(spec.get("test")) if "test" in spec else None
    if "test" not in spec:  # timing only: the image's own HEALTHCHECK
        ready: dict[str, Any] = {"healthcheck": True}
    elif words is None or words[0] not in ("CMD", "CMD-SHELL", "NONE") or (len(words) < 2 and words[0] != "NONE"):
        return Healthcheck(None, (f"cannot read healthcheck test {spec.get('test')!r}",))
    elif words[0] == "NONE":
        return Healthcheck({"healthcheck": False})
    elif words[0] == "CMD-SHELL":
        ready = {"exec": ["/bin/sh", "-c", " ".join(words[1:])]}
    else:
        probe = _exported_probe(words)
        if probe is not None and probe.kind == "tcp":
            ready = {"tcp": probe.port}
        elif probe is not None:
            fields = (("port", probe.port), ("path", _dollars(probe.path)), ("status", probe.status),
                      ("body", _dollars(probe.body) if probe.body else None))
            ready = {"http": {k: v for k, v in fields if v is not None and not (k == "path" and v == "/")}}
        else:
            ready = {"exec": words[1:]}
    if not math.isclose(deadline, 60.0):
        ready["timeout"] = f"{deadline:g}s"
    if set(ready) == {"healthcheck"}:
        return Healthcheck("healthcheck", tuple(notes))
    return Healthcheck(ready, tuple(notes))


def unescape(value: Any) -> Any:
    """``x-envkit`` values are blueprint syntax written into a Compose file, which reads ``$$`` as ``$``."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value


def depends(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {str(d): "started" for d in value}
    if isinstance(value, dict):
        return {str(d): CONDITIONS.get(str((o or {}).get("condition", "service_started")), "?")
                for d, o in value.items()}
    return {}


def definition(spec: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return {k: spec[k] for k in keys if isinstance(spec, dict) and spec.get(k)} or None


class BlueprintDumper(yaml.SafeDumper):
    """Block style, except short lists of words and small mappings on one line, as people write them."""


def _flow(data: Any) -> bool:
    return len(str(data)) <= 90 and all(isinstance(x, str | int | float | bool) or x is None for x in
                                        (data.values() if isinstance(data, dict) else data))


BlueprintDumper.add_representer(list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=_flow(data)))
BlueprintDumper.add_representer(dict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                  flow_style=bool(data) and _flow(data)))

