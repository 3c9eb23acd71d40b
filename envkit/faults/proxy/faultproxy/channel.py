"""The bounded queue between a link's pump and its worker (relay.py): at most ``capacity`` chunks wait, so a
stalled worker stalls the pump, and the pump stops reading."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

__all__ = ["Channel", "Chunk"]


@dataclass
class Chunk:
    data: bytes  # b"" is the end of the stream
    at: float


class Channel:
    """A bounded single-producer single-consumer queue that can also take an item at its front."""

    def __init__(self, capacity: int) -> None:
        self.items: deque[Chunk] = deque()
        self.capacity = capacity
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    async def put(self, item: Chunk) -> None:
        while len(self.items) >= self.capacity:
            self.writable.clear()
            await self.writable.wait()
        self.items.append(item)
        self.readable.set()

    def put_front(self, item: Chunk) -> None:
        self.items.appendleft(item)
        self.readable.set()

    async def get(self) -> Chunk:
        while not self.items:
            self.readable.clear()
            await self.readable.wait()
        item = self.items.popleft()
        if len(self.items) < self.capacity:
            self.writable.set()
        return item
