"""envkit's errors: one tree, one base class, each error knows its CLI exit code.

    EnvkitError (1)
    ├── UsageError (2) ............ bad CLI arguments or API use
    ├── BlueprintError (3) ........ the blueprint is invalid; carries every Problem found
    ├── EngineUnavailable (4) ..... no Docker engine answers
    ├── EngineError (5) ........... the engine refused or failed a call
    │   ├── NotFound (5) .......... the object is not there (removals treat this as success)
    │   ├── Conflict (5) .......... a name is taken, or the object is in the wrong state for the call
    │   │   └── PortBusy (5) ...... a host port to publish on is taken by another program
    │   ├── Busy (5) .............. in use for now (a network with endpoints still detaching); retried
    │   ├── Transient (5) ......... timeouts, 5xx, dropped connections mid-call; retried (envkit.retry)
    │   │   └── ConnectionLost (5)  the connection dropped mid-call: the engine may or may not have done it
    │   └── BuildFailed (5) ....... an image build failed (names the service, shows the build log tail)
    ├── Unsupported (2) ........... the engine lacks a capability the blueprint or the call needs
    ├── ServiceFailed (6) ......... a service exited, never got ready, or a job failed (names that service)
    │   └── SeedFailed (6) ........ one of its seed steps failed (names the step, shows its output)
    ├── RunNotFound (7) ........... no resources carry that run id
    ├── FaultError (5) ............ a fault proxy refused or failed a control call (or does not answer)
    └── Interrupted (130) ......... Ctrl-C or SIGTERM; what was created has been removed

Engine errors are told apart by class, never by message text: a backend translates its library's
errors into NotFound / Conflict / Busy / Transient once, at the boundary.

The CLI catches EnvkitError, prints ``str(error)`` and exits with ``error.exit_code``. Anything else
escaping the CLI is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envkit.text import strip_ansi

__all__ = [
    "BlueprintError",
    "BuildFailed",
    "Busy",
    "Conflict",
    "ConnectionLost",
    "EngineError",
    "EngineUnavailable",
    "EnvkitError",
    "FaultError",
    "Interrupted",
    "NotFound",
    "PortBusy",
    "Problem",
    "RunNotFound",
    "SeedFailed",
    "ServiceFailed",
    "Transient",
    "Unsupported",
    "UsageError",
    "engine_lost",
]


class EnvkitError(Exception):
    exit_code = 1


class UsageError(EnvkitError):
    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a blueprint, located as precisely as the source allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class BlueprintError(EnvkitError):
    exit_code = 3

    def __init__(self, problems: Sequence[Problem], what: str = "blueprint", hint: str = "") -> None:
        self.problems = tuple(sorted(set(problems)))
        self.hint = hint  # said once, before the problems: what they have in common
        count = len(self.problems)
        head = f"invalid {what}" if count == 1 else f"invalid {what} ({count} problems)"
        lines = ([f"  hint: {hint}"] if hint else []) + [f"  {p}" for p in self.problems]
        super().__init__(head + ":\n" + "\n".join(lines))


class EngineUnavailable(EnvkitError):
    exit_code = 4


class EngineError(EnvkitError):
    exit_code = 5


class NotFound(EngineError):
    """The engine has no such object (container, network, volume, image)."""


class Conflict(EngineError):
    """A name is already taken, or the object is in a state the call cannot act on."""


class PortBusy(Conflict):
    """A host port the container must publish on is already taken (``host_ip``:``port``; 0 if unknown)."""

    def __init__(self, message: str, host_ip: str = "", port: int = 0) -> None:
        self.host_ip = host_ip
        self.port = port
        super().__init__(message)


class Busy(EngineError):
    """The object is in use for now (e.g. a network whose endpoints are still detaching)."""


class Transient(EngineError):
    """A failure worth another try: a timeout, a 5xx answer, a connection dropped mid-call."""


class ConnectionLost(Transient):
    """The connection to the engine dropped in the middle of a call (the engine went away, or a proxy in
    front of it): the engine may or may not have done what was asked."""


def engine_lost(exc: BaseException) -> EnvkitError | None:
    """The lost engine behind a failure, if that is what it is: the first ``ConnectionLost`` or
    ``EngineUnavailable`` in the exception and its causes (a service's start failing because the
    connection dropped is the engine's failure, not the service's)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionLost | EngineUnavailable):
            return e
        todo += [e.__cause__, e.__context__]
    return None


class Unsupported(EnvkitError):
    """The engine cannot do what is asked ("engine swarm cannot pause containers")."""

    exit_code = 2


def _tail(lines: Sequence[str]) -> str:
    return "".join(f"\n  | {line}" for line in lines)


def _clean(lines: Sequence[str]) -> tuple[str, ...]:
    """Build and log output as text: colours and cursor moves (BuildKit, npm, pytest) removed."""
    return tuple(strip_ansi(line) for line in lines)


class BuildFailed(EngineError):
    def __init__(self, services: Sequence[str], image: str, reason: str, log_tail: Sequence[str]) -> None:
        self.services = tuple(services)
        self.image = image
        self.reason = _clean([reason])[0]
        self.log_tail = _clean(log_tail)
        names = ", ".join(services)
        super().__init__(
            f"service {names}: image build failed ({image}): {self.reason}"
            + (f"\n  last build output:{_tail(self.log_tail)}" if self.log_tail else "")
        )


class ServiceFailed(EnvkitError):
    """A service that failed for its own reasons — never the one that was waiting for it."""

    exit_code = 6

    def __init__(self, service: str, reason: str, log_tail: Sequence[str] = (), container: str = "",
                 log_head: Sequence[str] = ()) -> None:
        self.service = service
        self.reason = reason
        self.log_tail = _clean(log_tail)  # its last log lines
        self.log_head = _clean(log_head)  # and its first ones, when the log is longer than both
        self.container = container
        text = f"service {service}: {reason}"
        who = container or service
        if self.log_head:
            text += (f"\n  first and last log lines of {who}:{_tail(self.log_head)}\n  | …{_tail(self.log_tail)}")
        elif self.log_tail:
            text += f"\n  last log lines of {who}:{_tail(self.log_tail)}"
        elif container:
            text += f"\n  ({container} printed no logs)"
        super().__init__(text)


class SeedFailed(ServiceFailed):
    """A seed step of ``service`` failed: ``index`` of ``total``, of ``kind``, on ``file`` (relative to the
    blueprint's folder; "" for inline steps); ``output`` is what the step printed."""

    def __init__(self, service: str, index: int, total: int, kind: str, file: str, reason: str,
                 output: Sequence[str] = (), container: str = "") -> None:
        self.index, self.total, self.kind, self.file = index, total, kind, file
        self.output = tuple(output)
        super().__init__(service, reason, (), container)
        step = f"{kind} {file}" if file else kind
        text = f"service {service}: seed step {index}/{total} ({step}) failed: {reason}"
        if self.output:
            text += f"\n  output of the step:{_tail(self.output)}"
        self.args = (text,)


class RunNotFound(EnvkitError):
    exit_code = 7


class FaultError(EnvkitError):
    """A fault proxy's control API refused a call (``status`` is its HTTP status) or did not answer
    (``status`` 0). ``proxy`` and ``toxic`` name what the call was about, when it was about one."""

    exit_code = 5

    def __init__(self, message: str, status: int = 0, proxy: str = "", toxic: str = "") -> None:
        self.status = status
        self.proxy = proxy
        self.toxic = toxic
        super().__init__(message)


class Interrupted(EnvkitError):
    exit_code = 130
