"""Bodies that do not fit in one step: streamed between client and upstream with flow control.

Each function moves one body (or, for a tunnel, one direction) in pieces of at most
``READ_SIZE``, waiting whenever the receiving side is behind, so memory stays bounded whatever
the size. They route nothing and count nothing; the proxy decides what a failure means.
"""

from __future__ import annotations

from shipyard.cd.router.connection import Connection
from shipyard.cd.router.errors import BadMessage, PeerGone, PeerTimeout
from shipyard.cd.router.http import CHUNKED, ChunkedDecoder, RequestHead, chunk

READ_SIZE = 256 * 1024
"""Largest piece of a body moved in one step."""


class Upload:
    """How the streaming of one request body went."""

    __slots__ = ("complete", "failure")

    def __init__(self) -> None:
        self.complete = False
        self.failure: Exception | None = None


async def relay(
    client: Connection, upstream: Connection, framing: int, outgoing: int, head: bytes
) -> bool:
    """Send the response head and stream the body; return whether the upstream connection
    ended cleanly at the end of the message."""
    if framing >= 0:
        buffered = len(upstream.buffer)
        if buffered >= framing:
            client.write(head + upstream.take(framing) if framing else head)
            return True
        client.write(head + upstream.take(buffered) if buffered else head)
        remaining = framing - buffered
        while remaining:
            data = await upstream.read_some(min(remaining, READ_SIZE))
            remaining -= len(data)
            client.write(data)
            if client.write_paused:
                await client.drain()
                upstream.touch()
        return True
    client.write(head)
    if framing == CHUNKED:
        decoder = ChunkedDecoder(upstream=True)
        while not decoder.done:
            pieces = decoder.feed(await upstream.read_some(READ_SIZE))
            payload = b"".join(pieces)
            if payload:
                client.write(chunk(payload) if outgoing == CHUNKED else payload)
            if client.write_paused:
                await client.drain()
                upstream.touch()
        if outgoing == CHUNKED:
            client.write(decoder.end())
        return not decoder.leftover
    while True:
        try:
            data = await upstream.read_some(READ_SIZE)
        except PeerGone:
            break
        client.write(chunk(data) if outgoing == CHUNKED else data)
        if client.write_paused:
            await client.drain()
            upstream.touch()
    if outgoing == CHUNKED:
        client.write(b"0\r\n\r\n")
    return False


async def pump(
    client: Connection, upstream: Connection, request: RequestHead, upload: Upload
) -> None:
    """Stream the request body from the client to the upstream; the outcome goes in ``upload``."""
    try:
        if request.body > 0:
            remaining = request.body
            while remaining:
                data = await client.read_some(min(remaining, READ_SIZE))
                remaining -= len(data)
                upstream.write(data)
                upstream.touch()
                if upstream.write_paused:
                    await upstream.drain()
        else:
            decoder = ChunkedDecoder()
            while not decoder.done:
                payload = b"".join(decoder.feed(await client.read_some(READ_SIZE)))
                if payload:
                    upstream.write(chunk(payload))
                    upstream.touch()
                if upstream.write_paused:
                    await upstream.drain()
            upstream.write(decoder.end())
            client.unread(decoder.leftover)
        upload.complete = True
    except (PeerGone, PeerTimeout, BadMessage) as error:
        upload.failure = error
        upstream.abort()


async def splice(source: Connection, target: Connection) -> None:
    """One direction of a tunnel: what ``source`` sends goes to ``target`` until ``source``
    ends or fails; then ``target`` is closed once it has sent what it was given."""
    try:
        while True:
            target.write(await source.read_some(READ_SIZE))
            target.touch()  # traffic this way keeps the other way's silence from timing out
            if target.write_paused:
                await target.drain()
    except (PeerGone, PeerTimeout):
        pass
    finally:
        target.close()
