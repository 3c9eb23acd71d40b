"""`envkit up` on a slow fake engine, for the progress tests (run as a program, e.g. in a pseudo-terminal).

    python tests/unit/progress_demo.py BLUEPRINT [envkit up options...]

The fake builds images line by line and its exec readiness probe says "not accepting connections" three
times before it succeeds, so that each phase lasts long enough to be drawn.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from envkit.backends.base import BuildSpec, ExecResult
from envkit.backends.fake import FakeBackend
from envkit.cli import main


class SlowFake(FakeBackend):
    def __init__(self) -> None:
        super().__init__(images={"app:1"})
        self.exit_codes["migrate"] = 0
        self.probes = 0
        self.probe_lock = threading.Lock()

    def build_image(self, spec: BuildSpec, on_line: Callable[[str], None]) -> None:
        for line in ("Step 1/3 : FROM debian:bookworm-slim", "Step 2/3 : RUN apt-get install -y postgresql",
                     "\x1b[1mStep 3/3 : CMD postgres\x1b[0m"):
            on_line(line)
            time.sleep(0.3)
        super().build_image(spec, lambda line: None)

    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        with self.probe_lock:
            self.probes += 1
            n = self.probes
        time.sleep(0.25)
        if n <= 3:
            return ExecResult(1, f"no server yet (try {n})")
        return ExecResult(0, "")


if __name__ == "__main__":
    sys.exit(main(["up", *sys.argv[1:]], backend=SlowFake()))
