"""Files kept in memory as tar entries, for the fake backend's copy and export capabilities.

A store maps an absolute path ("/tmp/a.txt"; a volume's root is "/") to its tar header and content.
``pack`` names entries the way Docker's archive endpoint does: by the last component of the path
asked for ("a.txt", "dir/x"), or "." and "./x" for a root.
"""

from __future__ import annotations

import copy
import io
import posixpath
import tarfile

__all__ = ["Files", "exists", "is_dir", "pack", "relative", "under", "unpack"]

Files = dict[str, tuple[tarfile.TarInfo, bytes]]


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))


def under(path: str, root: str) -> bool:
    path, root = _norm(path), _norm(root)
    return root == "/" or path == root or path.startswith(root + "/")


def relative(path: str, root: str) -> str:
    """``path`` as seen from inside a mount at ``root`` ("/data/x" under "/data" is "/x")."""
    return _norm(_norm(path)[len(_norm(root)):])


def _inside(files: Files, key: str) -> list[str]:
    prefix = key.rstrip("/") + "/"
    return sorted(k for k in files if k.startswith(prefix) and k != key)


def exists(files: Files, key: str) -> bool:
    key = _norm(key)
    return key == "/" or key in files or bool(_inside(files, key))


def is_dir(files: Files, key: str) -> bool:
    key = _norm(key)
    return key == "/" or (key in files and files[key][0].isdir()) or (key not in files and bool(_inside(files, key)))


def unpack(files: Files, directory: str, archive: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            key = _norm(posixpath.join(_norm(directory), member.name))
            reader = tar.extractfile(member) if member.isfile() else None
            files[key] = (copy.copy(member), reader.read() if reader else b"")


def pack(files: Files, key: str) -> bytes:
    key = _norm(key)
    prefix = "." if key == "/" else posixpath.basename(key)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if key in files:
            head, data = files[key]
        else:
            head, data = tarfile.TarInfo(), b""
            head.type, head.mode = tarfile.DIRTYPE, 0o755
        entries = [(prefix, head, data)] + [(prefix + k[len(key.rstrip("/")):], *files[k]) for k in _inside(files, key)]
        for name, info, content in entries:
            out = copy.copy(info)
            out.name = name
            out.size = len(content)
            tar.addfile(out, io.BytesIO(content) if info.isfile() else None)
    return buffer.getvalue()
