"""The Kubernetes channel protocol over WebSocket (``v5.channel.k8s.io``, ``v4...``).

What exec and attach speak (`apimachinery/pkg/util/remotecommand/constants.go`,
`client-go/tools/remotecommand/websocket.go`): every message is binary and its
first byte names the channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
The client sends stdin and resize (``{"Width":W,"Height":H}`` JSON documents);
in v5 it ends stdin with the two bytes ``[0xFF, 0]`` (close channel 0); v4 has
no close message, so stdin only ends with the connection. The server sends
output, then one `Status` on channel 3 (Success, or Failure with reason
``NonZeroExitCode`` and an ``ExitCode`` cause carrying the exit code, which
kubectl turns into its own exit code), then a Close frame with code 1000:
without the Close frame kubectl reports error 1006. kubectl pings every 5 s
and gives up after 61 s without a pong; aiohttp answers pings by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 0xFF


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


def offered_protocols(request: web.Request) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in header.split(",") if p.strip()]


def exit_status(code: int, cmd: list[str]) -> dict[str, Any]:
    """The Status kubelet writes for a command that exited with `code` (0: Success)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command {cmd}, "
            f"exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


class Closable:
    """An async iterator fed by the reader task; None in the queue ends it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def put(self, item: Any) -> None:
        if not self.closed:
            self.queue.put_nowait(item)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (item := await self.queue.get()) is not None:
            yield item


def parse_sizes(data: bytes) -> list[TerminalSize]:
    """Resize messages: one or more JSON documents, possibly newline-separated."""
    text = data.decode(errors="replace")
    decoder = json.JSONDecoder()
    pos, out = 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(doc, dict):
            out.append(TerminalSize(int(doc.get("Width", 0)), int(doc.get("Height", 0))))
    return out


class ChannelSession:
    """One exec/attach WebSocket: the streams a backend reads and writes.

    `stdin` and `resize` are async iterators (None when not requested); `stdout`
    and `stderr` are sinks. `finish()` sends the final Status and the Close frame.
    """

    def __init__(self, ws: web.WebSocketResponse, stdin: bool, tty: bool) -> None:
        self.ws = ws
        self.v5 = ws.ws_protocol == V5
        self._stdin = Closable() if stdin else None
        self._resize = Closable() if tty else None
        self._lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    @property
    def stdin(self) -> AsyncIterator[bytes] | None:
        return aiter(self._stdin) if self._stdin is not None else None

    @property
    def resize(self) -> AsyncIterator[TerminalSize] | None:
        return aiter(self._resize) if self._resize is not None else None

    def sink(self, channel: int) -> Callable[[bytes], Awaitable[None]]:
        prefix = bytes([channel])

        async def write(data: bytes) -> None:
            if data and not self.ws.closed:
                async with self._lock:
                    await self.ws.send_bytes(prefix + data)

        return write

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel == STDIN and self._stdin is not None and data:
                    self._stdin.put(bytes(data))
                elif channel == RESIZE and self._resize is not None:
                    for size in parse_sizes(data):
                        self._resize.put(size)
                elif channel == CLOSE and self.v5 and data[:1] == bytes([STDIN]):
                    if self._stdin is not None:
                        self._stdin.close()
        finally:
            # The client went away (or closed): nothing more will come in.
            for stream in (self._stdin, self._resize):
                if stream is not None:
                    stream.close()

    async def finish(self, status: dict[str, Any]) -> None:
        try:
            if not self.ws.closed:
                async with self._lock:
                    await self.ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
                await self.ws.close(code=1000)
        except ConnectionError as e:
            log.debug("exec client went away before the end: %s", e)
        finally:
            self._reader.cancel()
