"""A small client for the running shop, built from the blueprint's outputs (standard library, psycopg, and
envkit's stub client for the payment gateway's stand-in)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from envkit.stubs.client import StubClient

OUTPUTS = ("API_URL", "DATABASE_URL", "REDIS_URL", "PAYMENTS_URL")
T = TypeVar("T")


@dataclass(frozen=True)
class Shop:
    """The running shop, as its outputs describe it."""

    outputs: dict[str, str]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             service: str = "API_URL") -> tuple[int, Any]:
        """An HTTP call to the API (or another service's URL output); returns (status, JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.outputs[service] + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def payments(self) -> StubClient:
        """The payment gateway's stub (kind: stub): what it was sent, and how it answers next."""
        return StubClient.from_url(self.outputs["PAYMENTS_URL"], "payments")

    def order_row(self, order_id: int) -> tuple[str, int, str] | None:
        """(email, amount_cents, status) of an order, read from PostgreSQL itself."""
        with psycopg.connect(self.outputs["DATABASE_URL"], connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT c.email, o.amount_cents, o.status FROM orders o JOIN customers c ON c.id = o.customer_id "
                "WHERE o.id = %s", (order_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None


def wait_for(probe: Callable[[], T | None], seconds: float = 15.0) -> T:
    """Poll until ``probe`` returns something truthy (the worker fulfils orders asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {seconds}s")
        time.sleep(0.05)
