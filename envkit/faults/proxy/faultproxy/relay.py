"""Proxies, their connections, and the two links (directions) of each connection.

A link is a pump (reads the source) and a worker (feeds each chunk through the attached effects, then
writes it), joined by a bounded channel: at most ``QUEUE`` chunks of ``CHUNK`` bytes wait per direction,
and a writer never holds more than asyncio's high-water mark, so a stalled peer stalls its sender
through TCP flow control instead of growing memory. With no effect attached and nothing queued the pump
hands the direction to the kernel (splice.py: socket → pipe → socket, no copy through Python) until
a toxic arrives or the stream ends; where splice is not available it writes directly. A half-close is
passed on as a half-close; a reset as a reset (SO_LINGER 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import random
import socket
import struct
import termios
from collections.abc import Awaitable
from typing import Any

from . import splice
from .channel import Channel, Chunk
from .splice import Splice
from .toxics import Effect, Toxic

__all__ = ["Connection", "Proxy", "split_address"]

CHUNK = 256 * 1024
QUEUE = 4
WRITE_BUFFER = 512 * 1024
CONNECT_TIMEOUT = 10.0
FLUSH_TIMEOUT = 0.5


def split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"an address is host:port, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Closed(Exception):
    """The connection was closed while a chunk was on its way."""


class Link:
    """One direction of one connection; implements toxics.LinkControl for its effects."""

    def __init__(self, conn: Connection, stream: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                 src_side: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.stream = stream
        self.src = src
        self.src_side = src_side  # the writer of the source's socket: its transport and the socket
        self.dst = dst
        self.splice: Splice | None = None
        self.effects: dict[str, Effect] = {}
        self.tasks: dict[Effect, set[asyncio.Task[None]]] = {}
        self.channel = Channel(QUEUE)
        self.inflight = 0
        self.loop = asyncio.get_running_loop()

    # -- LinkControl
    def now(self) -> float:
        return self.loop.time()

    def attached(self, effect: Effect) -> bool:
        return self.effects.get(effect.toxic.name) is effect

    async def sleep(self, effect: Effect, deadline: float | None) -> bool:
        while self.attached(effect):
            if self.conn.closed:
                raise Closed
            remaining = None if deadline is None else deadline - self.loop.time()
            if remaining is not None and remaining <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.conn.proxy.changed.wait(), remaining)
        return False

    def close(self, reset: bool) -> None:
        self.conn.close_soon(reset)

    def spawn(self, effect: Effect, work: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(Closed):
                await work

        task = asyncio.ensure_future(run())
        self.tasks.setdefault(effect, set()).add(task)
        task.add_done_callback(lambda t: self.tasks.get(effect, set()).discard(t))

    # -- effects follow the proxy's toxics
    def sync(self, toxics: list[Toxic]) -> None:
        wanted = {t.name: t for t in toxics if t.stream == self.stream}
        for name, effect in list(self.effects.items()):
            if wanted.get(name) is not effect.toxic:
                del self.effects[name]
                for task in self.tasks.pop(effect, set()):
                    task.cancel()
                if held := effect.detach():
                    self.inflight += 1
                    self.channel.put_front(Chunk(held, self.now()))
        rolled = self.conn.rolled.setdefault(self.stream, {})
        for name in list(rolled):
            if name not in wanted:
                del rolled[name]
        for name, toxic in wanted.items():
            if rolled.get(name) is toxic:
                continue  # this connection already rolled this toxic's toxicity
            rolled[name] = toxic
            rng = random.Random(f"{self.conn.proxy.seed}/{self.conn.proxy.name}/{self.conn.number}/{self.stream}/{name}")
            if rng.random() < toxic.toxicity:
                self.effects[name] = effect = toxic.effect(self, rng)
                effect.start()
        self.effects = {n: self.effects[n] for n in wanted if n in self.effects}
        if self.effects and self.splice is not None:
            self.splice.stop()  # the bytes go through the toxics again, once the pipe is empty

    # -- moving bytes
    async def pump(self) -> None:
        try:
            while True:
                if self._can_splice():
                    if await self._spliced():
                        self._end()
                        return
                    continue
                data = await self.src.read(CHUNK)
                if not self.effects and not self.inflight:
                    if not data:
                        self._end()
                        return
                    self.dst.write(data)
                    await self.dst.drain()
                    continue
                self.inflight += 1
                await self.channel.put(Chunk(data, self.now()))
                if not data:
                    return
        except OSError:
            self.conn.close_soon(reset=True)  # a reset (or a dead peer) is passed on as a reset

    def _can_splice(self) -> bool:
        """No effect, nothing queued or buffered on either side, both sockets open."""
        src: Any = self.src  # StreamReader keeps what it read ahead in _buffer
        return (splice.available(self.loop) and not self.effects and not self.inflight and not self.conn.closed
                and not src._buffer and not src._eof and src.exception() is None
                and not self.src_side.transport.is_closing() and not self.dst.transport.is_closing()
                and self.dst.transport.get_write_buffer_size() == 0)

    async def _spliced(self) -> bool:
        """Forward in the kernel until a toxic arrives (False) or the stream ends (True); OSError on a reset."""
        transport: Any = self.src_side.transport  # a socket transport: it also reads
        transport.pause_reading()
        self.splice = Splice(self.loop, self.src_side.get_extra_info("socket"), self.dst.get_extra_info("socket"))
        try:
            return await self.splice.run()
        finally:
            self.splice.close()
            self.splice = None
            if not transport.is_closing():
                transport.resume_reading()

    async def work(self) -> None:
        try:
            while True:
                chunk = await self.channel.get()
                chain = list(self.effects.values())
                if chunk.data:
                    await self._feed(chain, 0, chunk.data, chunk.at)
                else:
                    for effect in chain:
                        if self.attached(effect):
                            await effect.eof()
                    self._end()
                self.inflight -= 1
                if not chunk.data:
                    return
        except Closed:
            return
        except OSError:
            self.conn.close_soon(reset=True)

    async def _feed(self, chain: list[Effect], i: int, data: bytes, at: float) -> None:
        while i < len(chain) and not self.attached(chain[i]):
            i += 1
        if i == len(chain):
            if self.conn.closed:
                raise Closed
            self.dst.write(data)
            await self.dst.drain()
            return

        async def emit(out: bytes, when: float) -> None:
            if out:
                await self._feed(chain, i + 1, out, when)

        await chain[i].feed(data, at, emit)

    def _end(self) -> None:
        if self.dst.can_write_eof() and not self.dst.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self.dst.write_eof()
        self.conn.link_done()

    def stop(self) -> None:
        if self.splice is not None:
            self.splice.close()  # before any transport closes its socket
        for tasks in self.tasks.values():
            for task in tasks:
                task.cancel()
        self.tasks.clear()


class Connection:
    def __init__(self, proxy: Proxy, number: int, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.links: list[Link] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.rolled: dict[str, dict[str, Toxic]] = {}  # a connection rolls each toxic's toxicity once
        self.closed = False
        self.done = 0
        self.finished = asyncio.Event()

    async def run(self, client_reader: asyncio.StreamReader) -> None:
        host, port = self.proxy.upstream
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):  # in this task: wait_for would start another one
                up_reader, up_writer = await asyncio.open_connection(host, port, limit=CHUNK)
        except (OSError, TimeoutError):
            # The upstream is down: the client sees what a direct connection would, a refusal (as a reset).
            _abort(self.client)
            return
        self.upstream = up_writer
        _tune(self.client)
        _tune(up_writer)
        self.links = [Link(self, "upstream", client_reader, up_writer, self.client),
                      Link(self, "downstream", up_reader, self.client, up_writer)]
        for link in self.links:
            link.sync(self.proxy.toxic_list())
        for link in self.links:
            self.tasks += [asyncio.ensure_future(link.pump()), asyncio.ensure_future(link.work())]
        await self.finished.wait()

    def sync(self, toxics: list[Toxic]) -> None:
        for link in self.links:
            link.sync(toxics)

    def link_done(self) -> None:
        self.done += 1
        if self.done == 2:
            self.close_soon(reset=False)

    def close_soon(self, reset: bool) -> None:
        if not self.closed:
            self.closed = True
            self.tasks.append(asyncio.ensure_future(self._shutdown(reset)))

    async def _shutdown(self, reset: bool) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()  # nothing more is read or written; what the transports hold still goes out
        for link in self.links:
            link.stop()
        writers = [w for w in (self.client, self.upstream) if w is not None]
        if reset:
            # What was already forwarded reaches the peer first; only then the RST (which discards the rest).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FLUSH_TIMEOUT
            while any(_unsent(w) for w in writers) and loop.time() < deadline:
                await asyncio.sleep(0.002)
        else:
            # A FIN, not the RST a socket with unread input sends on close: half-close, then read and drop
            # what the peers still send, for a moment, before closing.
            for writer in writers:
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
            readers = [link.src for link in self.links if not link.src.at_eof()]
            if readers:
                await asyncio.wait([asyncio.ensure_future(_discard(r)) for r in readers], timeout=FLUSH_TIMEOUT)
        for writer in writers:
            if reset:
                _abort(writer)
            else:
                writer.close()
        self.finished.set()


async def _discard(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(CHUNK):
            pass


def _unsent(writer: asyncio.StreamWriter) -> int:
    if writer.transport.is_closing():
        return 0
    pending = writer.transport.get_write_buffer_size()
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ: sent, not acknowledged
            pending += struct.unpack("i", buf)[0]
    return pending


def _tune(writer: asyncio.StreamWriter) -> None:
    writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """A listener forwarding to one upstream, with its toxics and live connections."""

    def __init__(self, name: str, listen: tuple[str, int], upstream: tuple[str, int], seed: str) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.seed = seed
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self.total = 0
        self.server: asyncio.Server | None = None
        self.changed = asyncio.Event()

    def toxic_list(self) -> list[Toxic]:
        return list(self.toxics.values())

    def notify(self) -> None:
        """Toxics changed: every live connection follows, and whatever waits on a toxic wakes up."""
        toxics = self.toxic_list()
        for conn in list(self.connections):
            conn.sync(toxics)
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    async def enable(self) -> None:
        if self.server is None:
            host, port = self.listen
            self.server = await asyncio.start_server(self._accept, host, port, backlog=1024, reuse_address=True,
                                                     limit=CHUNK)
            if port == 0:  # the port the kernel chose is kept, so disable/enable gives back the same address
                self.listen = (host, self.server.sockets[0].getsockname()[1])
        self.enabled = True

    async def disable(self) -> None:
        """An outage: new connections are refused, live ones are closed."""
        self.enabled = False
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.close_soon(reset=False)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.total += 1
        conn = Connection(self, self.total, writer)
        self.connections.add(conn)
        try:
            await conn.run(reader)
        finally:
            self.connections.discard(conn)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": f"{self.listen[0]}:{self.listen[1]}",
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "enabled": self.enabled,
            "toxics": [t.as_json() for t in self.toxics.values()],
            "connections": {"active": len(self.connections), "total": self.total},
        }
