"""The one filter every file of a forensics bundle passes through (``envkit.forensics``; docs/forensics.md)."""

from __future__ import annotations

from collections.abc import Iterable

from envkit.blueprint.model import Blueprint
from envkit.outputs import mask
from envkit.secrets import Secret

__all__ = ["Redactor"]


class Redactor:
    """Masks secrets in any text: the values of secret-looking keys of the blueprint's environments
    (at least 4 characters: shorter ones would mangle every line) and passwords inside URLs.

    Names (the run's, its blueprint's, services', containers') are kept whole even when a secret is part
    of them (a password ``shop`` in run ``shop-1a2b3c``): they are in every label and container name
    anyway, and the bundle must still say which file is whose."""

    def __init__(self, blueprint: Blueprint | None, names: Iterable[str] = (), hidden: Iterable[Secret] = ()) -> None:
        found: set[str] = {s.value for s in hidden if s.value}  # read back from the run (another process's)
        for svc in (blueprint.services.values() if blueprint else ()):
            found |= {v for k, v in svc.environment if len(v) >= 4 and mask(k, v) == "****"}
        # Values the blueprint marks secret (docs/security.md), whatever their key is called.
        found |= {s.value for s in (blueprint.secrets if blueprint else ()) if s.value}
        self.secrets = sorted(found, key=len, reverse=True)
        self.names = sorted({n for n in names if any(s in n for s in self.secrets)}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        kept: dict[str, str] = {}
        for i, name in enumerate(self.names):
            if name in text:
                kept[f"\x00{i}\x00"] = name
                text = text.replace(name, f"\x00{i}\x00")
        for secret in self.secrets:
            text = text.replace(secret, "****")
        text = "\n".join(mask("", line) for line in text.split("\n"))
        for token, name in kept.items():
            text = text.replace(token, name)
        return text
