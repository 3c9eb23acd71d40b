"""The backend contract (tests/contract) against the in-memory fake: with every capability, and with
none (each capability refused with Unsupported). The Docker engine runs the same tests in
tests/integration/test_backend_contract.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from contract.backend_contract import BackendContract, Harness

from envkit.backends.base import BuildSpec, Capability, ExecResult
from envkit.backends.fake import FakeBackend, Program


class FakeHarness(Harness):
    image = "envkit-contract/shell:fake"

    def __init__(self, capabilities: frozenset[Capability] | None) -> None:
        self.backend: FakeBackend = FakeBackend(images={self.image}, capabilities=capabilities)

    def program(self, name: str, prints: str = "", exit_code: int | None = None) -> tuple[str, ...]:
        self.backend.log_text[name] = prints
        if exit_code is not None:
            self.backend.exit_codes[name] = exit_code
        return ("sh", "-c", "the fake runs no command")

    def answer(self, name: str, command: tuple[str, ...], result: ExecResult) -> None:
        self.backend.exec_results[name] = result

    def play(self, name: str, program: Program) -> None:
        self.backend.exec_programs[name] = program

    def failing_build(self, reason: str) -> Callable[[Callable[[str], None]], None]:
        tag = "envkit-contract/broken:fake"
        self.backend.build_failures[tag] = f"step 2: {reason}"
        spec = BuildSpec(tag, Path("ctx"), "Dockerfile", (), None, ())
        return lambda on_line: self.backend.build_image(spec, on_line)


class TestFakeBackend(BackendContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return FakeHarness(None)


class TestFakeBackendWithoutCapabilities(BackendContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return FakeHarness(frozenset())
