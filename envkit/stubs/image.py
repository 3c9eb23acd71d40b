"""The stub server's image: its build context ships inside the package; its tag is a content hash
(the same scheme as the fault proxy's, ``envkit.faults.image``)."""

from __future__ import annotations

from pathlib import Path

from envkit.faults.image import context_hash

__all__ = ["CONTEXT", "REPOSITORY", "image_tag"]

CONTEXT = Path(__file__).resolve().parent / "server"
REPOSITORY = "envkit/stub"


def image_tag(context: Path = CONTEXT) -> str:
    return f"{REPOSITORY}:{context_hash(context)[:16]}"
