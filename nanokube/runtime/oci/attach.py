"""The attacher's side of the shim's attach socket (the frames are described in `shim`).

Every frame is ``[kind][length: 4 bytes big-endian][payload]``. The shim sends kind 1
(stdout) and 2 (stderr); the attacher sends kind 0 (stdin bytes), 1 (a terminal resize:
width and height, 2 bytes each) and 2 (end of stdin). The session ends when the shim
closes the socket, that is when the container's output ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from nanokube.runtime.contract import OutputSink

log = logging.getLogger(__name__)

STDIN, RESIZE, STDIN_END = 0, 1, 2
STDOUT, STDERR = 1, 2


def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(4, "big") + payload


async def stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stdin: AsyncIterator[bytes] | None,
    stdout: OutputSink | None,
    stderr: OutputSink | None,
    resize: AsyncIterator[tuple[int, int]] | None,
) -> None:
    """Relay one attach session until the shim closes the socket."""

    async def send(kind: int, payload: bytes) -> None:
        writer.write(frame(kind, payload))
        await writer.drain()

    async def feed(source: AsyncIterator[bytes]) -> None:
        async for chunk in source:
            await send(STDIN, chunk)
        await send(STDIN_END, b"")

    async def sizes(source: AsyncIterator[tuple[int, int]]) -> None:
        async for width, height in source:
            await send(RESIZE, width.to_bytes(2, "big") + height.to_bytes(2, "big"))

    tasks = []
    if stdin is not None:
        tasks.append(asyncio.create_task(_quiet(feed(stdin))))
    if resize is not None:
        tasks.append(asyncio.create_task(_quiet(sizes(resize))))
    try:
        while True:
            try:
                head = await reader.readexactly(5)
                data = await reader.readexactly(int.from_bytes(head[1:], "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            sink = stdout if head[0] == STDOUT else stderr
            if sink is not None:
                await sink(data)
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _quiet(work: Coroutine[Any, Any, None]) -> None:
    """Run a sender; a socket the shim closed ends it without an error."""
    with contextlib.suppress(ConnectionError):
        await work
