"""The fault proxy's image: its build context ships inside the package; its tag is a content hash.

``image_tag()`` is ``envkit/fault-proxy:<16 hex>``: the same context builds once per machine, and a
changed byte gives a new tag. The image is labelled ``io.envkit.context-hash=<full hash>`` when built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["CONTEXT", "CONTROL_PORT", "REPOSITORY", "context_hash", "image_tag"]

CONTEXT = Path(__file__).resolve().parent / "proxy"
REPOSITORY = "envkit/fault-proxy"
CONTROL_PORT = 8474


def _files(context: Path) -> list[Path]:
    # What the .dockerignore beside the Dockerfile leaves out (byte-code) is left out of the hash too.
    return sorted(p for p in context.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def context_hash(context: Path = CONTEXT) -> str:
    h = hashlib.sha256()
    for path in _files(context):
        h.update(path.relative_to(context).as_posix().encode() + b"\0" + str(path.stat().st_mode & 0o111).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def image_tag(context: Path = CONTEXT) -> str:
    return f"{REPOSITORY}:{context_hash(context)[:16]}"
