"""The blueprint format as one table per mapping: every key, how it is read, its default, its line in
the reference, how it maps to Compose and whether it passes straight through to the engine.

Derived from these tables: normalisation (``normalize.py`` loops over them), the key reference in
docs/blueprint.md (``python -m envkit.blueprint.docs --write``; a unit test keeps them equal), the
Compose export (``envkit/export.py``), the JSON Schema (``schema.py``) and ``container_fields``.

To add a service key that passes through to the engine (say ``init: true``): one ``KeyDef`` below, the
field on ``model.Service`` and on ``backends.base.ContainerSpec``, and its use in the backends; then
regenerate the reference.
"""

from __future__ import annotations

from typing import Any

from envkit.blueprint import seed_values as sv
from envkit.blueprint import stub_values as stv
from envkit.blueprint import values as v
from envkit.blueprint.model import Service, SnapshotDef
from envkit.blueprint.placement import PLACEMENT, placement
from envkit.blueprint.readers import KeyDef, Reader, Table, show
from envkit.blueprint.stub_keys import STUB, STUB_MATCH, STUB_RESPONSE, STUB_ROUTE, STUB_TABLES, STUB_TLS

__all__ = [
    "BUILD",
    "HTTP",
    "MOUNT",
    "NETWORK",
    "PLACEMENT",
    "PORT",
    "PROBE",
    "SEED",
    "SEED_COPY",
    "SEED_EXEC",
    "SEED_HTTP",
    "SEED_READERS",
    "SEED_RUN",
    "SEED_SQL",
    "SERVICE",
    "SNAPSHOT",
    "STUB",
    "STUB_MATCH",
    "STUB_RESPONSE",
    "STUB_ROUTE",
    "STUB_TLS",
    "TABLES",
    "TOP",
    "VOLUME",
    "container_fields",
]

# JSON Schema of the value forms; ``{"$ref": "#/$defs/NAME"}`` is the mapping of the table NAME (TABLES).
# A value written as ``${VAR}`` is a string until it is interpolated: every number form also takes one.
STRING: dict[str, Any] = {"type": "string"}
INTERPOLATED: dict[str, Any] = {"type": "string", "pattern": r"\$\{"}
SCALAR: dict[str, Any] = {"type": ["string", "number"]}  # read as text: `user: 1000` is "1000"
BOOLEAN: dict[str, Any] = {"type": "boolean"}
DURATION: dict[str, Any] = {"anyOf": [{"type": "number", "minimum": 0},
                                      {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h))+\s*$"}, INTERPOLATED]}
COMMAND: dict[str, Any] = {"anyOf": [STRING, {"type": "array", "items": SCALAR}]}
PAIRS: dict[str, Any] = {"anyOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
                                   {"type": "array", "items": {"type": "string", "pattern": "="}}, {"type": "null"}]}
NAMES: dict[str, Any] = {"anyOf": [{"type": "array", "items": STRING}, {"type": "null"}]}
PORT_NUMBER: dict[str, Any] = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                                         {"type": "string", "pattern": r"^\s*\d+\s*$"}, INTERPOLATED]}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
PORT_SHORT: dict[str, Any] = {"type": "string",  # [[IP:][HOST]:]CONTAINER[/PROTOCOL]
                              "pattern": r"^\s*(?:(?:(?:[\d.]+|\[[0-9a-fA-F:]+\]):)?\d*:)?\d+(?:/(?:tcp|udp))?\s*$"}
CONDITION: dict[str, Any] = {"enum": ["started", "ready", "completed"]}
#: the long form of an environment entry or an output: ``{value: ..., secret: true}``
SECRET: dict[str, Any] = {"type": "object", "properties": {"value": SCALAR, "secret": BOOLEAN},
                          "required": ["value"], "additionalProperties": False}
SERVICE_LINK = "[service](#service-keys)"


def _nonempty(r: Reader, value: Any, path: tuple[str | int, ...]) -> str | None:
    """A string where an empty one means the default."""
    return r.string(value, path) or None


def _protocol(r: Reader, value: Any, path: tuple[str | int, ...]) -> str:
    if value not in ("tcp", "udp"):
        r.error(path, f"expected tcp or udp, got {show(value)}")
    # Kept as written even when wrong, so that "80/sctp" is not then also reported as a second "80/tcp".
    return str(value)


TOP = Table("blueprint", (
    KeyDef("name", None, None, "string matching `^[a-z0-9][a-z0-9_-]*$`, at most 40 characters",
           "derived from the path, see below",
           "Names the blueprint. Run ids (`<name>-<6 hex>`) and image tags are built from it.",
           {"anyOf": [{"type": "string", "pattern": NAME_PATTERN, "maxLength": 40}, INTERPOLATED]}),
    KeyDef("networks", None, {}, "mapping: network name → `null` or `{internal, labels}`", "`{}`",
           "Networks of the run. The network `default` exists without being declared.",
           {"anyOf": [{"type": "null"}, {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, "additionalProperties":
                                         {"anyOf": [{"$ref": "#/$defs/network"}, {"type": "null"}]}}]}),
    KeyDef("volumes", None, {}, "mapping: volume name → `null` or `{labels}`", "`{}`",
           "Named volumes of the run. Each one is private to the run.",
           {"anyOf": [{"type": "null"}, {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, "additionalProperties":
                                         {"anyOf": [{"$ref": "#/$defs/volume"}, {"type": "null"}]}}]}),
    KeyDef("services", None, {}, f"mapping: service name → {SERVICE_LINK}", "required",
           "Must hold at least one service. A service name must match `^[a-z0-9][a-z0-9_-]*$`.",
           {"type": "object", "minProperties": 1, "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {"anyOf": [{"$ref": "#/$defs/service"}, {"type": "null"}]}}),
    KeyDef("outputs", None, (), "mapping: output name → string template, or `{value, secret}`", "`{}`",
           "Values handed to tests. See [outputs.md](outputs.md); `secret: true`: [security.md](security.md).",
           {"anyOf": [{"type": "null"}, {"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                         "additionalProperties": {"anyOf": [SCALAR, SECRET]}}]}),
    KeyDef("secrets", None, (), "list of variable names", "none",
           "Variables whose values are secret: kept out of labels, plans and output. See [security.md](security.md).",
           NAMES),
    KeyDef("faults", None, {}, "mapping: scenario name → `{service, <kind>: value or mapping, …}`", "`{}`",
           "Named fault scenarios, applied by name (`envkit fault RUN NAME`). See [faults.md](faults.md).",
           {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"type": "object"}}]}),
    KeyDef("version", None, None, "anything", "—", "Accepted and ignored. The value is not checked."),
))

NETWORK = Table("network", (
    KeyDef("internal", Reader.boolean, False, "boolean", "`false`",
           "Creates the network as *internal*: it has no route to the outside.", BOOLEAN),
    KeyDef("labels", v.user_labels, (), "mapping or list of `KEY=value`", "none",
           "Extra engine labels on the network. Keys may not use `io.envkit.*`.", PAIRS),
))

VOLUME = Table("volume", (
    KeyDef("labels", v.user_labels, (), "mapping or list of `KEY=value`", "none",
           "Extra engine labels on the volume. Keys may not use `io.envkit.*`.", PAIRS),
))

BUILD = Table("build", (
    KeyDef("context", None, None, "folder path", "required",
           "The build context, relative to the blueprint's folder. It must hold the Dockerfile.", STRING),
    KeyDef("dockerfile", _nonempty, "Dockerfile", "file path", "`Dockerfile`",
           "The Dockerfile, relative to the context.", STRING),
    KeyDef("args", lambda r, x, q: r.pairs(x, q, "build args"), (), "key/value list", "none",
           "Build arguments.", PAIRS),
    KeyDef("target", Reader.string, None, "string", "the last stage", "The multi-stage target to build.", STRING),
))

PORT = Table("port", (
    KeyDef("container", lambda r, x, q: r.integer(x, q, 1, 65535, "a container port"), None, "port 1..65535",
           "required", "The container port to publish.", PORT_NUMBER),
    KeyDef("host", lambda r, x, q: r.integer(x, q, 1, 65535, "a host port") if x else None, None,
           "port 1..65535, or `0`", "ephemeral", "A pinned host port; `0` or absent: a free one, kept for the replica's life.",
           {"type": ["integer", "string", "null"]}),
    KeyDef("host_ip", v.host_ip, "127.0.0.1", "IP address", "`127.0.0.1`",
           "The host address to publish on. Any address other than loopback needs `allow: [public-ports]`.", STRING),
    KeyDef("protocol", _protocol, "tcp", "`tcp` or `udp`",
           "`tcp`", "The port's protocol.", {"enum": ["tcp", "udp"]}),
))

MOUNT = Table("mount", (
    KeyDef("type", None, "volume", "`volume` or `bind`", "`volume`", "A named volume or a bind mount.",
           {"enum": ["volume", "bind"]}),
    KeyDef("source", None, None, "volume name or host path", "required",
           "For `volume`: a name declared under the top-level `volumes:`. For `bind`: a host path relative to "
           "the blueprint's folder (`~` is expanded), which must exist when the blueprint is loaded.", STRING),
    KeyDef("target", None, None, "absolute path", "required", "Where it is mounted in the container.", STRING),
    KeyDef("read_only", None, False, "boolean", "`false`", "Mounts it read-only.", BOOLEAN),
))

PROBE = Table("probe", (
    KeyDef("tcp", None, None, "container port", "—", "Ready when a TCP connection succeeds.", PORT_NUMBER),
    KeyDef("http", None, None, "port, or `{port, path, status, body}`", "—",
           "Ready when `GET path` answers as expected.", {"anyOf": [PORT_NUMBER, {"$ref": "#/$defs/http"}]}),
    KeyDef("exec", None, None, "command", "—", "Ready when the command, run in the container, exits 0.", COMMAND),
    KeyDef("log", None, None, "regex", "—", "Ready when the regex matches the container's log.", STRING),
    KeyDef("healthcheck", None, None, "`true` or `false`", "—",
           "`true`: ready when the image's own `HEALTHCHECK` reports healthy. `false`: that check is turned off "
           "(as Compose's `disable: true`): ready once running.", BOOLEAN),
    KeyDef("timeout", None, v.DEFAULT_PROBE_TIMEOUT, "duration", "`60s`", "How long to wait; `0` also means 60 s.",
           DURATION),
))

HTTP = Table("http", (
    KeyDef("port", None, None, "container port", "required", "The port to send the request to.", PORT_NUMBER),
    KeyDef("path", None, "/", "URL path", "`/`", "Starts with `/`, URL-encoded.", STRING),
    KeyDef("status", None, None, "HTTP status 100..599", "any 2xx/3xx", "The status to expect.",
           {"type": ["integer", "string"]}),
    KeyDef("body", None, None, "regex", "none", "Must match the first 64 KiB of the body.", STRING),
))


def _timeout(r: Reader, value: Any, path: tuple[str | int, ...]) -> float | None:
    seconds = r.duration(value, path)
    if seconds is not None and seconds <= 0:
        r.error(path, "a timeout must be longer than 0s")
        return None
    return seconds


SEED_TIMEOUT = 600.0
SEED = Table("seed", (
    KeyDef("sql", None, None, "file path, SQL, or [mapping](#seed-sql)", "—",
           "SQL run through the service's own client (`psql`, `mysql`) in its container.",
           {"anyOf": [STRING, {"$ref": "#/$defs/seed-sql"}]}),
    KeyDef("copy", None, None, "[mapping](#seed-copy)", "—",
           "Files or a folder from beside the blueprint into the container.", {"$ref": "#/$defs/seed-copy"}),
    KeyDef("exec", None, None, "command, or [mapping](#seed-exec)", "—",
           "A command in the service's container; it must exit 0.", {"anyOf": [COMMAND, {"$ref": "#/$defs/seed-exec"}]}),
    KeyDef("http", None, None, "`\"METHOD /path\"`, or [mapping](#seed-http)", "—",
           "A request to the service; the answer must have the expected status.",
           {"anyOf": [STRING, {"$ref": "#/$defs/seed-http"}]}),
    KeyDef("run", None, None, "[mapping](#seed-run)", "—",
           "A one-off container on the run's networks (a migration tool); it must exit 0 and is removed after.",
           {"$ref": "#/$defs/seed-run"}),
))

SEED_SQL = Table("seed-sql", (
    KeyDef("file", lambda r, x, q: sv.file(r, x, q, "SQL file"), None, "file path (`.sql`, `.sql.gz`)",
           "— (exactly one of `file`/`inline`)", "Relative to the blueprint's folder.", STRING),
    KeyDef("inline", Reader.string, None, "string", "—", "The SQL itself.", STRING),
    KeyDef("client", sv.client, None, "`psql`, `mysql` or `mariadb`", "detected in the container",
           "The client that runs the SQL inside the service's container.", {"enum": list(sv.CLIENTS)}),
    KeyDef("database", _nonempty, None, "string", "`POSTGRES_DB` / `MYSQL_DATABASE` of the service, else the "
           "client's own", "The database to connect to.", SCALAR),
    KeyDef("user", _nonempty, None, "string", "`POSTGRES_USER`, else `postgres`; `root` for MySQL",
           "The database user.", SCALAR),
    KeyDef("password", _nonempty, None, "string", "`MYSQL_ROOT_PASSWORD` / `MARIADB_ROOT_PASSWORD` of the service",
           "The user's password (PostgreSQL's local socket needs none).", SCALAR),
    KeyDef("timeout", _timeout, SEED_TIMEOUT, "duration", "`10m`", "How long the step may take.", DURATION),
))

SEED_COPY = Table("seed-copy", (
    KeyDef("source", None, None, "file or folder path", "required",
           "Relative to the blueprint's folder; it must exist when the blueprint is loaded.", STRING),
    KeyDef("target", sv.absolute, None, "absolute path", "required",
           "Where the file or folder lands in the container (missing parent folders are made).", STRING),
    KeyDef("owner", sv.owner, None, "`uid` or `uid:gid` (numbers)", "`0:0`", "Owner of everything copied.", SCALAR),
    KeyDef("mode", sv.mode, None, "octal string (`\"0644\"`)", "each file's own mode",
           "Mode of every file copied (folders keep theirs).", {"type": ["string", "integer"]}),
))

SEED_EXEC = Table("seed-exec", (
    KeyDef("command", Reader.argv, None, "command", "required", "The command, run without a shell.", COMMAND),
    KeyDef("stdin", lambda r, x, q: sv.file(r, x, q, "stdin file"), None, "file path", "none",
           "A file beside the blueprint fed to the command's standard input.", STRING),
    KeyDef("user", _nonempty, None, "string", "the container's user", "The user the command runs as.", SCALAR),
    KeyDef("timeout", _timeout, SEED_TIMEOUT, "duration", "`10m`", "How long the step may take.", DURATION),
    KeyDef("writes", sv.writes, "dependencies", "`dependencies` or `own`", "`dependencies`",
           "Where the step may write, when the service has `depends_on`: `dependencies` (into the services it "
           "depends on too: the service cannot have a snapshot, and a reset of one of those runs the step again), "
           "or `own` (into this service alone, as a `sql` or `copy` step: its snapshot holds it). See "
           "[snapshots.md](snapshots.md#seeds-of-dependants).", {"enum": list(sv.WRITES)}),
))

SEED_HTTP = Table("seed-http", (
    KeyDef("path", sv.url_path, None, "URL path", "required", "Starts with `/`, URL-encoded.", STRING),
    KeyDef("port", lambda r, x, q: r.integer(x, q, 1, 65535, "a container port"), None, "container port",
           "the service's only published port", "The port the request goes to.", PORT_NUMBER),
    KeyDef("method", sv.method, "POST", "HTTP method", "`POST`", "The request's method.", STRING),
    KeyDef("json", sv.json_body, None, "any YAML value", "none", "Sent as a JSON body.", {}),
    KeyDef("body", lambda r, x, q: sv.file(r, x, q, "body file"), None, "file path", "none",
           "A file sent as the body.", STRING),
    KeyDef("headers", lambda r, x, q: r.pairs(x, q, "headers"), (), "key/value list", "none",
           "Extra request headers.", PAIRS),
    KeyDef("status", lambda r, x, q: r.integer(x, q, 100, 599, "an HTTP status"), None, "HTTP status 100..599",
           "any 2xx", "The status the answer must have.", {"type": ["integer", "string"]}),
    KeyDef("timeout", _timeout, 60.0, "duration", "`60s`", "How long the request may take.", DURATION),
    KeyDef("writes", sv.writes, "dependencies", "`dependencies` or `own`", "`dependencies`",
           "Where the step may write, when the service has `depends_on`: `dependencies` (into the services it "
           "depends on too: the service cannot have a snapshot, and a reset of one of those runs the step again), "
           "or `own` (into this service alone, as a `sql` or `copy` step: its snapshot holds it). See "
           "[snapshots.md](snapshots.md#seeds-of-dependants).", {"enum": list(sv.WRITES)}),
))

SEED_RUN = Table("seed-run", (
    KeyDef("image", Reader.string, None, "string", "the service's image", "The image of the one-off container.",
           SCALAR),
    KeyDef("build", None, None, "path string, or `{context, dockerfile, args, target}`", "—",
           "Builds its image, as a service's `build:`.", {"anyOf": [STRING, {"$ref": "#/$defs/build"}]}),
    KeyDef("command", Reader.argv, None, "command", "the image's `CMD`", "Replaces the image's command.", COMMAND),
    KeyDef("entrypoint", Reader.argv, None, "command", "the image's `ENTRYPOINT`", "Replaces the image's entrypoint.",
           COMMAND),
    KeyDef("environment", v.environment, (), "key/value list", "none", "Environment variables of the process.",
           PAIRS),
    KeyDef("user", Reader.string, None, "string", "the image's user", "The user the process runs as.", SCALAR),
    KeyDef("working_dir", Reader.string, None, "string", "the image's", "The process's working directory.", SCALAR),
    KeyDef("timeout", _timeout, SEED_TIMEOUT, "duration", "`10m`", "How long the container may run.", DURATION),
    KeyDef("writes", sv.writes, "dependencies", "`dependencies` or `own`", "`dependencies`",
           "Where the step may write, when the service has `depends_on`: `dependencies` (into the services it "
           "depends on too: the service cannot have a snapshot, and a reset of one of those runs the step again), "
           "or `own` (into this service alone, as a `sql` or `copy` step: its snapshot holds it). See "
           "[snapshots.md](snapshots.md#seeds-of-dependants).", {"enum": list(sv.WRITES)}),
))

#: each kind's reader with its table bound in
SEED_READERS: dict[str, sv.KindReader] = {
    "sql": lambda r, x, q: sv.sql(r, x, q, SEED_SQL),
    "copy": lambda r, x, q: sv.copy(r, x, q, SEED_COPY),
    "exec": lambda r, x, q: sv.exec_(r, x, q, SEED_EXEC),
    "http": lambda r, x, q: sv.http(r, x, q, SEED_HTTP),
    "run": lambda r, x, q: sv.run(r, x, q, SEED_RUN, BUILD, v.build),
}


SNAPSHOT = Table("snapshot", (
    KeyDef("reset", None, "auto", "`auto`, `template` or `restore`", "`auto`",
           "How `envkit reset` puts the service back: PostgreSQL template databases, or a restore from the "
           "snapshot; `auto`: templates when the container has `psql`.", {"enum": ["auto", "template", "restore"]}),
), extensions=False)


def _snapshot(r: Reader, value: Any, path: tuple[str | int, ...]) -> SnapshotDef | bool | None:
    """``true``/``false``, or ``{reset: ...}`` (implies true)."""
    if isinstance(value, bool):
        return SnapshotDef(at=path) if value else False
    spec = r.mapping(value, path, "true, false or a mapping {reset}")
    if spec is None:
        return None
    r.keys(spec, path, SNAPSHOT)
    reset = spec.get("reset", "auto")
    if reset not in ("auto", "template", "restore"):
        r.error((*path, "reset"), f"expected auto, template or restore, got {show(reset)}")
        return None
    return SnapshotDef(reset, at=path)



SERVICE = Table("service", (
    KeyDef("image", Reader.string, None, "string", "— (exactly one of `image`/`build`)",
           "The image to run; pulled if the engine does not have it.", SCALAR,
           section="image-and-build", compose_fn="image"),
    KeyDef("build", lambda r, x, q: v.build(r, x, q, BUILD), None,
           "path string, or `{context, dockerfile, args, target}`", "—",
           "Builds the image from a Dockerfile next to the blueprint.",
           {"anyOf": [STRING, {"$ref": "#/$defs/build"}]}, section="image-and-build"),  # Compose: see image
    KeyDef("kind", v.kind, "service", "`service`, `job` or `stub`", "`service`",
           "A long-running service, a job that must exit 0, or an HTTP stub ([stubs.md](stubs.md)).",
           {"enum": ["service", "job", "stub"]},
           section="kind", compose_fn="kind"),
    KeyDef("command", Reader.argv, None, "command", "the image's `CMD`", "Replaces the image's command.", COMMAND,
           section="command-and-entrypoint", compose="command", container="command"),
    KeyDef("entrypoint", Reader.argv, None, "command", "the image's `ENTRYPOINT`", "Replaces the image's entrypoint.",
           COMMAND, section="command-and-entrypoint", compose="entrypoint", container="entrypoint"),
    KeyDef("environment", v.environment, (), "key/value list; a value may be `{value, secret: true}`", "none",
           "Environment variables of the process.",
           {"anyOf": [{"type": "object", "additionalProperties": {"anyOf": [
               {"type": ["string", "number", "boolean", "null"]}, SECRET]}},
                      {"type": "array", "items": {"type": "string", "pattern": "="}}, {"type": "null"}]},
           section="environment", compose="environment", container="environment"),
    KeyDef("user", Reader.string, None, "string", "the image's user", "The user (and group) the process runs as.",
           SCALAR, section="user-working_dir-hostname", compose="user", container="user"),
    KeyDef("working_dir", Reader.string, None, "string", "the image's working directory",
           "The process's working directory.", SCALAR, section="user-working_dir-hostname",
           compose="working_dir", container="working_dir"),
    KeyDef("networks", v.service_networks, (), "list of names, or mapping name → `{aliases}`", "`[default]`",
           "The networks the service joins.", {"anyOf": [NAMES, {"type": "object", "additionalProperties": {
               "anyOf": [{"type": "null"}, {"type": "object", "properties": {"aliases": NAMES}}]}}]},
           section="networks", compose_fn="networks"),
    KeyDef("ports", lambda r, x, q: v.ports(r, x, q, PORT), (), "list of short strings/numbers or long mappings",
           "none", "Container ports published on the host.", {"anyOf": [{"type": "null"}, {"type": "array", "items": {
               "anyOf": [PORT_NUMBER, PORT_SHORT, {"$ref": "#/$defs/port"}]}}]}, section="ports", compose_fn="ports"),
    KeyDef("volumes", lambda r, x, q: v.mounts(r, x, q, MOUNT), (), "list of short strings or long mappings",
           "none", "Named volumes and bind mounts.", {"anyOf": [{"type": "null"}, {"type": "array", "items": {
               "anyOf": [STRING, {"$ref": "#/$defs/mount"}]}}]}, section="volumes-mounts", compose_fn="volumes"),
    KeyDef("tmpfs", v.tmpfs, (), "string, list, or mapping path → options", "none",
           "In-memory file systems.", {"type": ["string", "array", "object", "null"]},
           section="tmpfs", compose_fn="tmpfs", container="tmpfs"),
    KeyDef("labels", v.user_labels, (), "key/value list", "none", "Extra engine labels on the containers.", PAIRS,
           section="labels", compose="labels"),
    KeyDef("memory", v.memory, None, "size", "no limit", "The memory limit.", {"type": ["string", "integer"]},
           section="memory-and-cpus", compose="mem_limit", container="memory"),
    KeyDef("cpus", v.cpus, None, "positive number", "no limit", "The CPU limit.", {"type": ["string", "number"]},
           section="memory-and-cpus", compose="cpus", container="cpus"),
    KeyDef("replicas", v.replicas, 1, "integer 1..64", "`1`", "How many identical containers to run.",
           {"type": ["integer", "string"]}, section="replicas", compose_fn="replicas"),
    KeyDef("depends_on", v.depends_on, (), "list of names, or mapping name → condition", "none",
           "Services whose condition (`started`, `ready`, `completed`) the process waits for.",
           {"anyOf": [NAMES, {"type": "object", "additionalProperties": {"anyOf": [
               CONDITION, {"type": "null"}, {"type": "object", "properties": {"condition": CONDITION},
                                             "additionalProperties": False}]}}]},
           section="depends_on", compose_fn="depends_on"),
    KeyDef("ready", lambda r, x, q: v.ready(r, x, q, PROBE, HTTP), None,
           "`healthcheck`, or `{tcp\\|http\\|exec\\|log\\|healthcheck, timeout}`",
           "none (see [without a probe](#without-a-probe))", "How to tell the service is ready.",
           {"anyOf": [{"const": "healthcheck"}, {"type": "null"}, {"$ref": "#/$defs/probe"}]},
           section="ready-readiness-probes", compose_fn="ready"),
    KeyDef("stop_grace_period", Reader.duration, 0.0, "duration", "`0`: killed at teardown",
           "How long teardown waits after the stop signal before it kills.", DURATION,
           section="stop_grace_period-and-stop_signal", compose_fn="stop_grace_period"),
    KeyDef("stop_signal", Reader.string, None, "string", "the image's `STOPSIGNAL`",
           "The signal that stops the container when it has a grace period.", STRING,
           section="stop_grace_period-and-stop_signal", compose="stop_signal", container="stop_signal"),
    KeyDef("privileged", Reader.boolean, False, "boolean", "`false`", "Runs the container privileged.", BOOLEAN,
           section="privileged-and-cap_add", compose="privileged", container="privileged"),
    KeyDef("cap_add", v.cap_add, (), "list of strings", "none", "Linux capabilities to add.", NAMES,
           section="privileged-and-cap_add", compose="cap_add", container="cap_add"),
    KeyDef("cap_drop", v.cap_add, (), "list of strings", "none", "Linux capabilities to drop (`ALL`: every one).",
           NAMES, section="privileged-and-cap_add", compose="cap_drop", container="cap_drop"),
    KeyDef("read_only", Reader.boolean, False, "boolean", "`false`",
           "Mounts the container's root file system read-only.", BOOLEAN, section="read_only",
           compose="read_only", container="read_only"),
    KeyDef("ulimits", v.ulimits, (), "mapping name → number or `{soft, hard}`", "the engine's",
           "Resource limits of the process (`nofile`, `nproc`, `memlock` …; -1: unlimited).",
           {"type": ["object", "null"], "additionalProperties": {"anyOf": [
               {"type": ["integer", "string"]},
               {"type": "object", "properties": {"soft": {"type": ["integer", "string"]},
                                                 "hard": {"type": ["integer", "string"]}}}]}},
           section="ulimits", compose_fn="ulimits", container="ulimits"),
    KeyDef("init", Reader.boolean, False, "boolean", "`false`",
           "Runs the engine's init as PID 1 in front of the process.", BOOLEAN, section="init",
           compose="init", container="init"),
    KeyDef("hostname", Reader.string, None, "string", "`<service>`, or `<service>-<n>` when `replicas` > 1",
           "The container's host name.", SCALAR, section="user-working_dir-hostname", compose="hostname"),
    KeyDef("prestart", Reader.boolean, True, "boolean", "`true`",
           "Starts the container early behind a gate when it waits for a dependency.", BOOLEAN,
           section="prestart-the-pre-start-gate"),  # Compose: nothing to carry over (no gate needed)
    KeyDef("seed", lambda r, x, q: sv.seeds(r, x, q, SEED, SEED_READERS), (),
           "list of steps `{sql\\|copy\\|exec\\|http\\|run: …}`", "none",
           "Fills the service with data once it is ready, before its dependants start. See [seeds.md](seeds.md).",
           {"anyOf": [{"type": "null"}, {"type": "array", "items": {"$ref": "#/$defs/seed"}}]},
           section="seed-data-steps", compose_fn="seed"),
    KeyDef("allow", v.allow, (), "list of `host-paths`, `docker-socket`, `privileged`, `capabilities`, "
           "`public-ports`", "none", "What the service may ask of the host; see [security.md](security.md).",
           {"anyOf": [{"type": "array", "items": {"enum": list(v.ALLOWANCES)}}, {"type": "null"}]},
           section="allow-host-access"),  # Compose: nothing to carry over (what it allows is copied as it is)
    KeyDef("snapshot", lambda r, x, q: _snapshot(r, x, q) or None, None, "`true`, or `{reset}`", "`false`",
           "Captures the seeded state once; later runs start from it. See [snapshots.md](snapshots.md).",
           {"anyOf": [BOOLEAN, {"$ref": "#/$defs/snapshot"}]}),  # Compose: none; export keeps it in x-envkit
    KeyDef("stub", lambda r, x, q: stv.stub(r, x, q, STUB_TABLES), None, "[mapping](#stub)", "—",
           "The routes of a `kind: stub` service. See [stubs.md](stubs.md).", {"$ref": "#/$defs/stub"},
           section="stub-http-stand-ins"),
    KeyDef("placement", placement, None, "`{constraints, max_per_node, preferences}`", "anywhere",
           "Where a distributed engine may run the replicas; no effect on one engine. See [swarm.md](swarm.md).",
           {"$ref": "#/$defs/placement"}, section="placement", compose_fn="placement", container="placement"),
))

#: every table, by the name the reference markers and the schema's ``$defs`` use
TABLES: dict[str, Table] = {t.title: t for t in (TOP, NETWORK, VOLUME, SERVICE, BUILD, PORT, MOUNT, PROBE, HTTP,
                                                 SEED, SEED_SQL, SEED_COPY, SEED_EXEC, SEED_HTTP, SEED_RUN,
                                                  SNAPSHOT, STUB, STUB_ROUTE, STUB_MATCH, STUB_RESPONSE, STUB_TLS,
                                                  PLACEMENT)}


def container_fields(svc: Service) -> dict[str, Any]:
    """{ContainerSpec field: value} of every service key that passes straight through to the engine."""
    return {k.container: getattr(svc, k.field) for k in SERVICE if k.container}
