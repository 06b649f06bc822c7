"""Taking over an HTTP connection after a non-WebSocket upgrade (SPDY/3.1).

aiohttp speaks WebSocket itself but has no public way to hand over the raw
connection for another protocol. It does what is needed for its own WebSocket
support, and this module uses the same hooks: after the ``101`` head is
written, `RequestHandler.set_parser` routes every further byte of the
connection (and whatever arrived with the request) into a parser of our own,
here one that feeds a `StreamReader`; writes go straight to the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

WRITE_BUFFER_LIMIT = 1 << 20  # bytes queued on the socket before a writer waits


class _Feed:
    """The parser interface aiohttp calls on an upgraded connection."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class RawConnection:
    """Both directions of a hijacked connection."""

    def __init__(
        self,
        response: web.StreamResponse,
        reader: asyncio.StreamReader,
        transport: asyncio.BaseTransport,
    ) -> None:
        self.response = response  # what the aiohttp handler returns at the end
        self.reader = reader
        self.transport = transport

    async def write(self, data: bytes) -> None:
        transport = self.transport
        assert isinstance(transport, asyncio.WriteTransport)
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        while transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            if transport.is_closing():
                raise ConnectionResetError("connection closed")
            await asyncio.sleep(0.005)

    def close(self) -> None:
        self.transport.close()


async def hijack(request: web.Request, headers: dict[str, str]) -> RawConnection:
    """Answer `101 Switching Protocols` with `headers` and take the connection over."""
    resp = web.StreamResponse(status=101, headers=headers)
    await resp.prepare(request)
    feed = _Feed()
    protocol = request.protocol
    protocol.set_parser(feed)  # type: ignore[arg-type]
    protocol.keep_alive(False)
    transport = request.transport
    assert transport is not None
    return RawConnection(resp, feed.reader, transport)


async def pump(conn: RawConnection, feed: Callable[[bytes], Awaitable[None]]) -> None:
    """Hand everything the peer sends to `feed` until it closes the connection."""
    while data := await conn.reader.read(64 * 1024):
        await feed(data)
