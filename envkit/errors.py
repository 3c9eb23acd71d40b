"""envkit's errors: one tree, one base class, each error knows its CLI exit code.

    EnvkitError (1)
    ├── UsageError (2) ............ bad CLI arguments or API use
    ├── BlueprintError (3) ........ the blueprint is invalid; carries every Problem found
    ├── EngineUnavailable (4) ..... no Docker engine answers
    ├── EngineError (5) ........... the engine refused or failed a call
    │   └── BuildFailed (5) ....... an image build failed (names the service, shows the build log tail)
    ├── ServiceFailed (6) ......... a service exited, never got ready, or a job failed (names that service)
    ├── RunNotFound (7) ........... no resources carry that run id
    └── Interrupted (130) ......... Ctrl-C or SIGTERM; what was created has been removed

The CLI catches EnvkitError, prints ``str(error)`` and exits with ``error.exit_code``. Anything else
escaping the CLI is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BlueprintError",
    "BuildFailed",
    "EngineError",
    "EngineUnavailable",
    "EnvkitError",
    "Interrupted",
    "Problem",
    "RunNotFound",
    "ServiceFailed",
    "UsageError",
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

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(set(problems)))
        count = len(self.problems)
        head = "invalid blueprint" if count == 1 else f"invalid blueprint ({count} problems)"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class EngineUnavailable(EnvkitError):
    exit_code = 4


class EngineError(EnvkitError):
    exit_code = 5


def _tail(lines: Sequence[str]) -> str:
    return "".join(f"\n  | {line}" for line in lines)


class BuildFailed(EngineError):
    def __init__(self, services: Sequence[str], image: str, reason: str, log_tail: Sequence[str]) -> None:
        self.services = tuple(services)
        self.image = image
        self.reason = reason
        self.log_tail = tuple(log_tail)
        names = ", ".join(services)
        super().__init__(
            f"service {names}: image build failed ({image}): {reason}"
            + (f"\n  last build output:{_tail(self.log_tail)}" if self.log_tail else "")
        )


class ServiceFailed(EnvkitError):
    """A service that failed for its own reasons — never the one that was waiting for it."""

    exit_code = 6

    def __init__(self, service: str, reason: str, log_tail: Sequence[str] = (), container: str = "") -> None:
        self.service = service
        self.reason = reason
        self.log_tail = tuple(log_tail)
        self.container = container
        text = f"service {service}: {reason}"
        if self.log_tail:
            text += f"\n  last log lines of {container or service}:{_tail(self.log_tail)}"
        elif container:
            text += f"\n  ({container} printed no logs)"
        super().__init__(text)


class RunNotFound(EnvkitError):
    exit_code = 7


class Interrupted(EnvkitError):
    exit_code = 130
