"""exec and attach over plain SPDY/3.1: kubectl's fallback when WebSocket fails.

The client (`client-go/tools/remotecommand/{spdy,v4}.go`) POSTs with
``Upgrade: SPDY/3.1`` and offers versions in ``X-Stream-Protocol-Version``; we
answer ``v4.channel.k8s.io``. It then opens one stream per channel, each with
a ``streamtype`` header (``error``, ``stdin``, ``stdout``, ``stderr``,
``resize``), and waits for each SYN_REPLY. The command starts once every
stream the query asked for exists (upstream's kubelet waits the same way).
Stdin ends with the client's FIN on its stream; resize carries the same JSON
as in the WebSocket protocol. At the end the server writes the v4 `Status`
on the error stream, ends every stream with FIN and closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nanokube.kubelet.streaming import spdy
from nanokube.kubelet.streaming.websocket import Closable, TerminalSize, parse_sizes

log = logging.getLogger(__name__)

PROTOCOL = "v4.channel.k8s.io"
STREAM_WAIT = 30.0  # seconds to wait for the client's streams (upstream's timeout)

Send = Callable[[bytes], Awaitable[None]]


class SpdyCommandSession:
    """The server end of one SPDY exec/attach connection."""

    def __init__(self, send: Send, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
        self._send_raw = send
        self._lock = asyncio.Lock()
        self._codec = spdy.HeaderCodec()
        self._reader = spdy.FrameReader(self._codec)
        self.expected = {"error"}
        self.expected |= {"stdin"} if stdin else set()
        self.expected |= {"stdout"} if stdout else set()
        self.expected |= {"stderr"} if stderr and not tty else set()
        self.expected |= {"resize"} if tty else set()
        self._ids: dict[str, int] = {}
        self._types: dict[int, str] = {}
        self.ready = asyncio.Event()
        self._stdin = Closable() if stdin else None
        self._resize = Closable() if tty else None

    @property
    def stdin(self) -> AsyncIterator[bytes] | None:
        return aiter(self._stdin) if self._stdin is not None else None

    @property
    def resize(self) -> AsyncIterator[TerminalSize] | None:
        return aiter(self._resize) if self._resize is not None else None

    async def _send(self, frame: bytes) -> None:
        async with self._lock:
            await self._send_raw(frame)

    async def feed(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            if frame.kind == spdy.SYN_STREAM:
                kind = frame.headers.get("streamtype", "")
                self._ids[kind] = frame.stream_id
                self._types[frame.stream_id] = kind
                await self._send(spdy.syn_reply(self._codec, frame.stream_id, {}))
                if self.expected <= self._ids.keys():
                    self.ready.set()
            elif frame.kind == 0:
                kind = self._types.get(frame.stream_id, "")
                if kind == "stdin" and self._stdin is not None:
                    if frame.data:
                        self._stdin.put(frame.data)
                    if frame.fin:
                        self._stdin.close()
                elif kind == "resize" and self._resize is not None:
                    for size in parse_sizes(frame.data):
                        self._resize.put(size)
            elif frame.kind == spdy.PING:
                await self._send(spdy.ping(frame.data))

    def connection_lost(self) -> None:
        for stream in (self._stdin, self._resize):
            if stream is not None:
                stream.close()

    def sink(self, kind: str) -> Callable[[bytes], Awaitable[None]] | None:
        if kind not in self.expected:
            return None

        async def write(data: bytes) -> None:
            if data:
                await self._send(spdy.data_frame(self._ids[kind], data))

        return write

    async def finish(self, status: dict[str, Any]) -> None:
        """The Status on the error stream, then FIN on every stream we write."""
        try:
            await self._send(spdy.data_frame(self._ids["error"], json.dumps(status).encode()))
            for kind in ("stdout", "stderr", "error"):
                if kind in self._ids:
                    await self._send(spdy.data_frame(self._ids[kind], b"", fin=True))
        except ConnectionError as e:
            log.debug("exec client went away before the end: %s", e)
