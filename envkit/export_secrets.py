"""Secret values out of an exported Compose file (docs/security.md): each becomes a ``${VAR}`` reference,
which Compose fills in from the environment or an ``--env-file`` when it runs.

A secret variable keeps its name (``DB_PASSWORD``); a ``secret: true`` environment entry ``db.API_TOKEN``
becomes ``DB_API_TOKEN``. Every string of the document is already ``$``-escaped for Compose (``$$``), so
a reference written in place is the only ``$`` Compose interpolates. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from envkit.secrets import Secret

__all__ = ["references", "variable"]


def variable(name: str) -> str:
    """The Compose variable a secret is read from: ``DB_PASSWORD``; ``db.API_TOKEN`` → ``DB_API_TOKEN``."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return text if "." not in name else text.upper()


def references(document: Any, secrets: Iterable[Secret]) -> tuple[Any, dict[str, str]]:
    """``document`` with every secret value (in its ``$$``-escaped forms) replaced by ``${VAR}``, and the
    values by variable — only those the document held."""
    names: dict[str, str] = {}  # value -> variable
    for s in sorted((s for s in secrets if s.value), key=lambda s: (-len(s.value), s.name)):
        if s.value not in names:
            base = variable(s.name)
            taken = set(names.values())
            names[s.value] = next(v for v in (base, *(f"{base}_{i}" for i in range(2, 100))) if v not in taken)
    used: dict[str, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret, var in names.items():
                # Escaped once for Compose; or twice, in blueprint text kept under x-envkit (outputs).
                for escaped in dict.fromkeys((secret.replace("$", "$$$$"), secret.replace("$", "$$"))):
                    if escaped in value:
                        value = value.replace(escaped, f"${{{var}}}")
                        used[var] = secret
            return value
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(document), dict(sorted(used.items()))
