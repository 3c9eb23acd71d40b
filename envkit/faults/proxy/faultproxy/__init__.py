"""envkit's fault proxy: a TCP proxy per faultable port, with Toxiproxy-style toxics per direction.

Standard library only (it runs in its own small image); ``python3 -m faultproxy --help``.
"""

from __future__ import annotations

VERSION = "1"
