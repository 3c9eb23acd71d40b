"""``python3 -m stubserver``: reads the routes from ENVKIT_STUB_CONFIG (JSON) and serves them."""

from __future__ import annotations

import json
import os
import ssl
import sys

from .server import serve


def main() -> int:
    text = os.environ.get("ENVKIT_STUB_CONFIG")
    if not text:
        print("envkit-stub: ENVKIT_STUB_CONFIG is not set", file=sys.stderr, flush=True)
        return 2
    try:
        config = json.loads(text)
    except ValueError as exc:
        print(f"envkit-stub: ENVKIT_STUB_CONFIG is not JSON: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        serve(config)
    except (OSError, ssl.SSLError) as exc:  # its port taken, or TLS without its files (never copied in)
        print(f"envkit-stub: cannot serve: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
