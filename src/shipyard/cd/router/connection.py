"""One TCP connection of the data path: a receive buffer with flow control, read by callbacks
or awaited by one task.

Reading pauses when the buffer is full and resumes as it is consumed, writing waits while the
kernel is behind, so memory per connection stays bounded whatever the body size. Timeouts are
deadlines that a sweeper checks, so a request costs no timer of its own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from shipyard.cd.router.errors import BadMessage, PeerGone, PeerTimeout
from shipyard.cd.router.http import MAX_HEAD, MAX_REQUEST_LINE

HIGH_WATER = 256 * 1024
"""Bytes buffered before reading from the socket pauses."""

LOW_WATER = 64 * 1024
"""Bytes buffered below which reading resumes."""


class Connection(asyncio.Protocol):
    """A buffered TCP connection; exactly one task reads from it and one writes to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[Connection]) -> None:
        self.loop = loop
        self.registry = registry
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.closed = False
        self.eof = False
        self.timed_out = False
        self.read_timeout = 0.0
        self.write_timeout = 0.0
        self.read_deadline = 0.0
        self.write_deadline = 0.0
        self.idle_since = 0.0
        self.partner: Connection | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._read_paused = False
        self.write_paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport and the peer's address."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        """Buffer ``data``; pause reading if the buffer is full; wake the reader."""
        buffer = self.buffer
        buffer += data
        if len(buffer) > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        """The peer will send nothing more: wake the reader, cancel the partner if any."""
        self.eof = True
        self._wake()
        partner = self.partner
        if partner is not None:
            partner.abort()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: wake everybody waiting on it, cancel the partner if any."""
        self.closed = True
        self.registry.discard(self)
        self._wake()
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)
        partner = self.partner
        if partner is not None:
            partner.abort()

    def pause_writing(self) -> None:
        """The kernel's send buffer is full: writers wait in ``drain``."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The send buffer emptied: release a waiting writer."""
        self.write_paused = False
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    # Reading and writing from the one task that owns each direction.

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending (a no-op once the connection is gone)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was written (``write_timeout`` idle)."""
        while self.write_paused:
            if self.closed:
                raise PeerGone("the connection closed while sending")
            if self.timed_out:
                raise PeerTimeout("the peer stopped reading")
            if self.write_timeout:
                self.write_deadline = self.loop.time() + self.write_timeout
            drainer = self.loop.create_future()
            self._drainer = drainer
            try:
                await drainer
            finally:
                self._drainer = None
                self.write_deadline = 0.0
        if self.closed:
            raise PeerGone("the connection closed while sending")

    async def wait(self) -> None:
        """Wait for more data (``read_timeout`` at most); ``PeerGone`` or ``PeerTimeout`` if
        none can come."""
        if self.timed_out:
            raise PeerTimeout("no data before the deadline")
        if self.closed or self.eof:
            raise PeerGone("the connection closed")
        if self.read_timeout:
            self.read_deadline = self.loop.time() + self.read_timeout
        waiter = self.loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
            self.read_deadline = 0.0
        if self.timed_out:
            raise PeerTimeout("no data before the deadline")

    def touch(self) -> None:
        """Progress in the other direction: push a running read deadline back."""
        if self.read_deadline:
            self.read_deadline = self.loop.time() + self.read_timeout

    async def read_head(
        self, *, limit: int = MAX_HEAD, upstream: bool = False, within: float = 0.0
    ) -> bytes | None:
        """The next message head, or None if the peer closed cleanly before sending one.

        With ``within``, a head must be complete that many seconds after its first byte,
        however slowly it trickles in."""
        buffer = self.buffer
        searched = 0
        started = 0.0
        while True:
            if not upstream and buffer.startswith(b"\r\n"):
                del buffer[:2]  # RFC 9112: ignore an empty line before a request
                continue
            end = buffer.find(b"\r\n\r\n", searched)
            if end >= 0:
                end += 4
                if end == len(buffer):
                    head = bytes(buffer)
                    buffer.clear()
                else:
                    head = bytes(buffer[:end])
                    del buffer[:end]
                self.consumed()
                return head
            if len(buffer) > limit:
                raise BadMessage(502 if upstream else 431, "the header section is too large")
            if (
                not upstream
                and len(buffer) > MAX_REQUEST_LINE
                and buffer.find(b"\r\n", 0, MAX_REQUEST_LINE + 2) < 0
            ):
                raise BadMessage(414, "the request line is too long")
            searched = max(0, len(buffer) - 3)
            if not buffer and (self.closed or self.eof):
                return None
            if within and buffer:
                now = self.loop.time()
                started = started or now
                self.read_timeout = max(0.001, started + within - now)
            await self.wait()

    async def read_some(self, most: int) -> bytes:
        """Between 1 and ``most`` bytes, waiting for them; ``PeerGone`` if the peer closed."""
        buffer = self.buffer
        while not buffer:
            await self.wait()
        if len(buffer) <= most:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:most])
            del buffer[:most]
        self.consumed()
        return data

    def take(self, size: int) -> bytes:
        """Exactly ``size`` bytes that are already buffered."""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.consumed()
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffer (bytes of the next message)."""
        if data:
            self.buffer[0:0] = data

    def consumed(self) -> None:
        """The buffer shrank: resume reading if it had been paused and is now low enough."""
        if self._read_paused and len(self.buffer) < LOW_WATER and not self.closed:
            self._read_paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    # Lifecycle

    def expire(self) -> None:
        """Called by the sweeper when a deadline passed: fail whatever waits on this."""
        self.timed_out = True
        self.read_deadline = self.write_deadline = 0.0
        self._wake()
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def close(self) -> None:
        """Close after sending what is queued."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is queued (the peer sees a reset)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def reusable(self) -> bool:
        """Whether this idle upstream connection can carry another request."""
        return not (self.closed or self.eof or self.timed_out or self.buffer)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def sweep(registry: set[Connection], now: float) -> None:
    """Expire every connection of ``registry`` whose deadline has passed."""
    for connection in list(registry):
        read, write = connection.read_deadline, connection.write_deadline
        if (read and read < now) or (write and write < now):
            connection.expire()


class Awaiting(Protocol):
    """What waits for an upstream's answer in callbacks instead of in a task."""

    def answered(self, data: bytes) -> None:
        """The upstream sent ``data`` (nothing was buffered for it)."""

    def interrupted(self) -> None:
        """The upstream closed, was reset or missed its deadline."""


class UpstreamConnection(Connection):
    """A connection to an upstream instance; while ``awaiting`` is set, its answer goes there
    instead of into the buffer that a task reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[Connection]) -> None:
        super().__init__(loop, registry)
        self.awaiting: Awaiting | None = None

    def data_received(self, data: bytes) -> None:
        """Hand ``data`` to what awaits an answer, or buffer it."""
        awaiting = self.awaiting
        if awaiting is None:
            super().data_received(data)
        else:
            awaiting.answered(data)

    def eof_received(self) -> bool:
        """The instance closed its side: tell what awaits an answer."""
        result = super().eof_received()
        self._interrupt()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: tell what awaits an answer."""
        super().connection_lost(exc)
        self._interrupt()

    def expire(self) -> None:
        """The deadline passed: tell what awaits an answer."""
        super().expire()
        self._interrupt()

    def _interrupt(self) -> None:
        awaiting = self.awaiting
        if awaiting is not None:
            self.awaiting = None
            awaiting.interrupted()
