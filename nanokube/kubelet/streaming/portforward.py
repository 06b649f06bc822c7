"""Port-forward: SPDY/3.1 streams carried over a WebSocket (``SPDY/3.1+portforward.k8s.io``).

kubectl 1.33 tunnels SPDY inside a WebSocket (`client-go/tools/portforward/
tunneling_connection.go`): the WebSocket is a plain byte pipe, each client
`Write` one binary message, so frames arrive split across messages and are
reassembled by `spdy.FrameReader`. Upstream's API server unwraps the tunnel and
speaks SPDY to the kubelet (`apiserver/pkg/util/proxy/streamtunnel.go`); here
the agent terminates the tunnel itself, so the API server only relays
WebSocket messages.

Per local connection the client opens two streams that share a ``requestid``
header (`kubelet/.../portforward/httpstream.go`): first ``streamtype: error``
(which the client half-closes at once), then ``streamtype: data``, both with
``port``. Every SYN_STREAM gets an empty SYN_REPLY. Once both are open the
session connects to the pod's port and copies bytes: client DATA → pod; pod →
DATA frames; the client's FIN half-closes the pod connection; the pod's EOF
sends FIN on the data stream and then on the error stream, which the client
waits for. A failure is written as text on the error stream (kubectl prints
it and reports "lost connection to pod"). PINGs are echoed. The same session
serves plain SPDY (kubectl's fallback, ``X-Stream-Protocol-Version:
portforward.k8s.io``) over a taken-over HTTP connection (`rawconn`).

`serve_channels` is the other port-forward protocol upstream's kubelet serves
(`cri/streaming/portforward/websocket.go`), used by the Python client: the
channel protocol ``v4.channel.k8s.io`` with the ports in the ``ports`` query;
port i has data channel 2i and error channel 2i+1, and the server's first
message on each carries the port as two little-endian bytes. One connection
per port per WebSocket; the WebSocket closes when every port is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from nanokube.kubelet.streaming import spdy

log = logging.getLogger(__name__)

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
SPDY_PROTOCOL = "portforward.k8s.io"  # X-Stream-Protocol-Version of plain SPDY (the fallback)
PAIR_TIMEOUT = 30.0  # seconds a stream waits for its partner (upstream's stream creation timeout)

Send = Callable[[bytes], Awaitable[None]]
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class _Pair:
    port: int
    error_id: int = 0
    data_id: int = 0
    to_pod: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    reset: bool = False
    task: asyncio.Task[None] | None = None


class PortForwardSession:
    """The server end of one SPDY port-forward connection.

    `feed()` takes the bytes the client sent (in any pieces); frames go out
    through `send`; `connect(port)` opens the connection into the pod.
    """

    def __init__(self, send: Send, connect: Connect) -> None:
        self._send_raw = send
        self._connect = connect
        self._codec = spdy.HeaderCodec()
        self._reader = spdy.FrameReader(self._codec)
        self._lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}
        self._last_stream = 0
        self.closed = False

    async def _send(self, frame: bytes) -> None:
        if self.closed:
            return
        async with self._lock:
            await self._send_raw(frame)

    async def feed(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if frame.kind == 0:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                if frame.data:
                    pair.to_pod.put_nowait(frame.data)
                if frame.fin:
                    pair.to_pod.put_nowait(None)
        elif frame.kind == spdy.SYN_STREAM:
            await self._open(frame)
        elif frame.kind == spdy.PING:
            await self._send(spdy.ping(frame.data))
        elif frame.kind == spdy.RST_STREAM:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                pair.reset = True
                pair.to_pod.put_nowait(None)
        elif frame.kind == spdy.GOAWAY:
            await self.close()
        # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do without flow control.

    async def _open(self, frame: spdy.Frame) -> None:
        sid = frame.stream_id
        self._last_stream = max(self._last_stream, sid)
        kind = frame.headers.get("streamtype", "")
        request_id = frame.headers.get("requestid", "")
        try:
            port = int(frame.headers.get("port", ""))
        except ValueError:
            port = 0
        if kind not in ("error", "data") or not 0 < port < 65536:
            log.debug("refusing stream id=%d headers=%s", sid, frame.headers)
            await self._send(spdy.rst_stream(sid, spdy.RST_PROTOCOL_ERROR))
            return
        await self._send(spdy.syn_reply(self._codec, sid, {}))
        # kubectl < 1.10 sent no requestid; the stream id of the error stream pairs them then.
        key = request_id or str(sid if kind == "error" else sid - 2)
        pair = self._pairs.setdefault(key, _Pair(port))
        self._by_stream[sid] = pair
        if kind == "error":
            pair.error_id = sid
        else:
            pair.data_id = sid
        if pair.error_id and pair.data_id and pair.task is None:
            pair.task = asyncio.create_task(self._forward(key, pair))

    async def _forward(self, key: str, pair: _Pair) -> None:
        try:
            reader, writer = await self._connect(pair.port)
        except Exception as e:  # noqa: BLE001 - any failure is reported to the client
            message = f"error forwarding port {pair.port} to pod: {e}"
            log.info("port-forward failed port=%d error=%s", pair.port, e)
            await self._send(spdy.data_frame(pair.error_id, message.encode()))
            await self._finish(key, pair)
            return
        upload = asyncio.create_task(self._upload(pair, writer))
        try:
            while chunk := await reader.read(32 * 1024):
                if pair.reset:
                    break
                await self._send(spdy.data_frame(pair.data_id, chunk))
        except (ConnectionError, OSError) as e:
            log.debug("port-forward pod side ended port=%d error=%s", pair.port, e)
        finally:
            upload.cancel()
            writer.close()
        await self._finish(key, pair)

    async def _upload(self, pair: _Pair, writer: asyncio.StreamWriter) -> None:
        try:
            while (chunk := await pair.to_pod.get()) is not None:
                writer.write(chunk)
                await writer.drain()
            if pair.reset:
                writer.close()  # the client gave up on this connection: so does the pod side
            elif writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError) as e:
            log.debug("port-forward upload ended port=%d error=%s", pair.port, e)

    async def _finish(self, key: str, pair: _Pair) -> None:
        if not pair.reset:
            await self._send(spdy.data_frame(pair.data_id, b"", fin=True))
        await self._send(spdy.data_frame(pair.error_id, b"", fin=True))
        self._pairs.pop(key, None)
        self._by_stream.pop(pair.data_id, None)
        self._by_stream.pop(pair.error_id, None)

    async def close(self) -> None:
        """End every forwarded connection (the client went away or said GOAWAY)."""
        if self.closed:
            return
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        self.closed = True
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass


async def serve_channels(ws: web.WebSocketResponse, ports: list[int], connect: Connect) -> None:
    """Forward `ports` over a channel-protocol WebSocket until every port is done."""
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        if not ws.closed:
            async with lock:
                await ws.send_bytes(bytes([channel]) + data)

    for i, port in enumerate(ports):
        await send(2 * i, port.to_bytes(2, "little"))
        await send(2 * i + 1, port.to_bytes(2, "little"))
    uploads: list[asyncio.Queue[bytes | None]] = [asyncio.Queue() for _ in ports]

    async def forward(i: int, port: int) -> None:
        try:
            reader, writer = await connect(port)
        except Exception as e:  # noqa: BLE001 - any failure is reported to the client
            await send(2 * i + 1, f"error forwarding port {port} to pod: {e}".encode())
            return

        async def upload() -> None:
            while (chunk := await uploads[i].get()) is not None:
                writer.write(chunk)
                await writer.drain()

        task = asyncio.create_task(upload())
        try:
            while chunk := await reader.read(32 * 1024):
                await send(2 * i, chunk)
        except (ConnectionError, OSError) as e:
            log.debug("port-forward pod side ended port=%d error=%s", port, e)
        finally:
            task.cancel()
            writer.close()

    async def read() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel = msg.data[0]
            if channel % 2 == 0 and channel // 2 < len(ports):
                uploads[channel // 2].put_nowait(bytes(msg.data[1:]))
        for queue in uploads:
            queue.put_nowait(None)

    reader = asyncio.create_task(read())
    forwards = [asyncio.create_task(forward(i, port)) for i, port in enumerate(ports)]

    async def all_forwards() -> None:
        await asyncio.gather(*forwards)

    done = asyncio.create_task(all_forwards())
    try:
        await asyncio.wait((reader, done), return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
        for task in forwards:
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)
        await ws.close()
        reader.cancel()
