"""Removing a network that an engine says still has endpoints, when no container is behind them.

Docker 20.10 can leave a network "has active endpoints" after every container on it is gone: the
endpoint of a removed container stays in the network's store, and the network can never be removed
until that endpoint is forced off (``docker network disconnect --force NET NAME``). A real endpoint
(a container that still runs on the network) is left alone: the network is then busy for a reason,
and the removal reports it.

``remove_network`` is the one way both the Docker backend and the fake remove a network: the removal
runs under the one retry policy (``envkit.retry``); after each ``Busy`` answer, every endpoint whose
container no longer exists is forced off before the next attempt. If the network still cannot be
removed, the ``Busy`` raised names the network and the endpoints still on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from envkit import retry
from envkit.errors import Busy, EngineError, NotFound

__all__ = ["Endpoint", "remove_network"]

#: an endpoint on a network: its name (the container's name) and whether that container still exists
Endpoint = tuple[str, bool]


def remove_network(name: str, remove: Callable[[], None], endpoints: Callable[[], Sequence[Endpoint]],
                   force_off: Callable[[str], None], sleep: Callable[[float], None] | None = None) -> list[str]:
    """Remove network ``name`` (``remove``: one attempt). Returns the stale endpoints forced off. A network
    that is gone already is success."""
    dropped: list[str] = []

    def attempt() -> None:
        try:
            remove()
        except Busy:
            with contextlib.suppress(EngineError):  # looking and forcing are best effort; the retry decides
                for endpoint, alive in endpoints():
                    if not alive and endpoint not in dropped:
                        force_off(endpoint)
                        dropped.append(endpoint)
            raise

    try:
        retry.call(attempt, sleep)
    except NotFound:
        return dropped
    except Busy as exc:
        try:
            left = [f"{e} ({'running' if alive else 'no container'})" for e, alive in endpoints()]
        except EngineError:
            left = []
        forced = f"; forced off: {', '.join(dropped)}" if dropped else ""
        still = f": still attached: {', '.join(left)}" if left else ""
        raise Busy(f"network {name} still has active endpoints{still}{forced} ({exc})") from exc
    return dropped
