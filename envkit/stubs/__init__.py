"""HTTP stand-ins for external services: ``kind: stub`` (docs/stubs.md).

    envkit/stubs/model.py          the typed ``stub:`` key and the JSON the server reads
    envkit/stubs/image.py          the stub image's content-hashed tag (its context: server/)
    envkit/stubs/server/           the server (standard library only), built into that image
    envkit/stubs/client.py         the journal and run-time responses, from tests and the CLI
"""

from __future__ import annotations
