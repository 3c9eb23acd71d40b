"""The one retry policy for engine calls that failed *for now*.

What is retried: a call that raised ``Transient`` (a timeout, a 5xx answer, a connection dropped
mid-call) or ``Busy`` (a network whose endpoints are still detaching, a volume a container being
removed still holds, a removal another process has under way). Everything else — ``NotFound``,
``Conflict``, any other ``EngineError``, ``EngineUnavailable`` — is raised at once, on the first attempt.

Which calls: only idempotent ones, so that a second attempt cannot do twice what the first did. The
Docker backend retries ping, inspections (containers, images), listings, ``logs``, reading files out
of a container, the three creates (network, volume, container — a name ``Conflict`` after a failed
attempt is taken as that attempt's success when the object there carries the labels asked for),
stop-before-remove, and the removals (container, network, volume, image). It never retries start,
exec, build, pull, wait (a timeout there means "still running"), signals, pause, network
(dis)connection, copying in, commit or volume import.

How often and how long: at most ``ATTEMPTS`` (25) attempts, waiting ``FIRST_WAIT`` (50 ms) after the
first, doubling up to ``MAX_WAIT`` (1 s) between attempts, and giving up once ``DEADLINE`` (30 s) has
passed since the first attempt; the last error is then raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from envkit.errors import Busy, Conflict, Transient

__all__ = ["ATTEMPTS", "DEADLINE", "FIRST_WAIT", "MAX_WAIT", "RETRIED", "call", "create", "policy"]

T = TypeVar("T")

ATTEMPTS = 25
DEADLINE = 30.0  # seconds since the first attempt
FIRST_WAIT = 0.05  # seconds
MAX_WAIT = 1.0  # seconds
RETRIED: tuple[type[Exception], ...] = (Transient, Busy)


def policy(sleep: Callable[[float], None] | None = None) -> Retrying:
    """The policy as a tenacity ``Retrying`` (``sleep`` replaceable for tests)."""
    extra = {} if sleep is None else {"sleep": sleep}
    return Retrying(
        retry=retry_if_exception_type(RETRIED),
        wait=wait_exponential(multiplier=FIRST_WAIT, max=MAX_WAIT),
        stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(DEADLINE),
        reraise=True,
        **extra,  # type: ignore[arg-type]
    )


def call(fn: Callable[[], T], sleep: Callable[[float], None] | None = None) -> T:
    """``fn()`` under the policy: its result, or the first permanent error, or the last transient one."""
    return policy(sleep)(fn)


def create(make: Callable[[], T], existing: Callable[[], T | None],
           sleep: Callable[[float], None] | None = None) -> T:
    """A create of a named object under the policy. An attempt that failed for now may have succeeded
    on the engine all the same (a timeout after the engine made it): when a later attempt then finds
    the name taken (``Conflict``), ``existing()`` says whether the object there is the one asked for —
    it returns it when it carries this call's labels, None otherwise — and only then is it the earlier
    attempt's success. On the first attempt a Conflict is always raised: the name belongs to another."""
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        try:
            return make()
        except Conflict:
            found = existing() if attempts > 1 else None
            if found is None:
                raise
            return found

    return call(attempt, sleep)
