"""The agent's streaming server spoken to directly, as the API server relays kubectl:
the v5/v4 channel protocol (output, Status on channel 3, Close 1000, stdin close,
pongs), refused upgrades, port-forward streams over the WebSocket tunnel, logs
over HTTP, and who may call the server at all."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fake_streaming_backend import FakeBackend, echo_server
from support import free_port

from nanokube.cli import certs
from nanokube.kubelet.streaming import server, spdy, websocket
from nanokube.kubelet.streaming.portforward import PROTOCOL as PORTFORWARD


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[str, FakeBackend]]:
    backend = FakeBackend(tmp_path)
    port = free_port()
    runner = await server.start(backend, "127.0.0.1", port, None)
    try:
        yield f"http://127.0.0.1:{port}", backend
    finally:
        await runner.cleanup()


async def run_exec(
    url: str,
    protocol: str = websocket.V5,
    send: list[bytes] | None = None,
    params: list[tuple[str, str]] | None = None,
) -> tuple[dict[int, bytes], dict[str, Any], int | None]:
    """Messages per channel, the ch3 Status and the Close code of one exec."""
    out: dict[int, bytes] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=[protocol], params=params) as ws:
            assert ws.protocol == protocol
            for message in send or []:
                await ws.send_bytes(message)
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY
                out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
            status = json.loads(out.pop(websocket.ERROR))
            return out, status, ws.close_code


async def test_exec_success(agent: tuple[str, FakeBackend]) -> None:
    base, backend = agent
    cmd = ["sh", "-c", "echo hi; echo e >&2"]
    out, status, code = await run_exec(
        f"{base}/exec/ns/p/uid-1/app",
        params=[*(("command", c) for c in cmd), ("output", "1"), ("error", "1")],
    )
    assert out == {websocket.STDOUT: b"hi\n", websocket.STDERR: b"e\n"}
    assert status == {"metadata": {}, "status": "Success"}
    assert code == 1000
    assert backend.calls == [("exec", server.PodRef("ns", "p", "uid-1"), "app")]


async def test_exec_exit_code_status(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    _, status, code = await run_exec(
        f"{base}/exec/ns/p/app?command=sh&command=-c&command=exit 3&output=1"
    )
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert code == 1000


async def test_v5_stdin_close(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    send = [b"\x00abc", b"\x00def", bytes([websocket.CLOSE, websocket.STDIN])]
    out, status, _ = await run_exec(f"{base}/exec/ns/p/app?command=cat&input=1&output=1", send=send)
    assert out[websocket.STDOUT] == b"abcdef"
    assert status["status"] == "Success"


async def test_v4_is_spoken_too(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    out, status, code = await run_exec(
        f"{base}/exec/ns/p/app?command=echo&command=v4&output=1", protocol=websocket.V4
    )
    assert (out[websocket.STDOUT], status["status"], code) == (b"v4\n", "Success", 1000)


async def test_backend_errors_reach_the_error_channel(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    _, status, code = await run_exec(f"{base}/exec/ns/p/app?command=/no/such/thing&output=1")
    assert status["status"] == "Failure"
    assert "executable file not found" in status["message"]
    assert code == 1000


async def test_pings_are_answered(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    url = f"{base}/exec/ns/p/app?command=sleep&command=1&output=1"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=[websocket.V5], autoping=False) as ws:
            await ws.ping(b"beat")
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"beat")


async def test_refused_before_upgrade(agent: tuple[str, FakeBackend]) -> None:
    base, _ = agent
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/exec/ns/p/app?command=true&output=1") as resp:
            assert resp.status == 400
            assert "upgrade to WebSocket or SPDY/3.1 required" in (await resp.json())["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{base}/exec/ns/p/app?output=1", protocols=[websocket.V5])
        assert info.value.status == 400
        assert info.value.headers is not None
        assert info.value.headers[server.ERROR_HEADER] == "you must specify at least 1 command"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{base}/exec/ns/p/app?command=true&output=1", protocols=["x"])


async def test_logs_over_http(agent: tuple[str, FakeBackend]) -> None:
    base, backend = agent
    backend.log_file("app", 0).write_bytes(
        b"2024-01-02T03:04:05Z stdout F a\n2024-01-02T03:04:06Z stdout F b\n"
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/containerLogs/ns/p/app?tailLines=1&timestamps=true"
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert await resp.read() == b"2024-01-02T03:04:06Z b\n"
        async with session.get(f"{base}/containerLogs/ns/p/other") as resp:
            assert resp.status == 404
            assert (await resp.json())["reason"] == "NotFound"


class SpdyClient:
    """kubectl's side of the port-forward tunnel, written with the same framing module."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.codec = spdy.HeaderCodec()
        self.reader = spdy.FrameReader(spdy.HeaderCodec())
        self.frames: list[spdy.Frame] = []

    async def send(self, frame: bytes) -> None:
        # kubectl's writes reach the server split into small messages
        for i in range(0, len(frame), 3):
            await self.ws.send_bytes(frame[i : i + 3])

    async def open(self, sid: int, kind: str, port: int, request_id: str) -> None:
        headers = {"streamtype": kind, "port": str(port), "requestid": request_id}
        await self.send(spdy.syn_stream(self.codec, sid, headers))

    async def until(self, done: Any) -> None:
        async with asyncio.timeout(10):
            while not done(self.frames):
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                self.frames.extend(self.reader.feed(msg.data))

    def data(self, sid: int) -> bytes:
        return b"".join(f.data for f in self.frames if f.kind == 0 and f.stream_id == sid)

    def finished(self, sid: int) -> bool:
        return any(f.kind == 0 and f.stream_id == sid and f.fin for f in self.frames)


async def test_port_forward_streams(agent: tuple[str, FakeBackend]) -> None:
    base, backend = agent
    echo, echo_port = await echo_server()
    backend.ports[80] = echo_port
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{base}/portForward/ns/p", protocols=[PORTFORWARD]) as ws:
            assert ws.protocol == PORTFORWARD
            client = SpdyClient(ws)
            await client.send(spdy.ping(b"\x00\x00\x00\x01"))
            await client.open(1, "error", 80, "0")
            await client.send(spdy.data_frame(1, b"", fin=True))
            await client.open(3, "data", 80, "0")
            await client.send(spdy.data_frame(3, b"hello", fin=True))
            await client.until(lambda fs: client.finished(1))
            replies = [f.stream_id for f in client.frames if f.kind == spdy.SYN_REPLY]
            assert replies == [1, 3]
            assert any(f.kind == spdy.PING and f.data == b"\x00\x00\x00\x01" for f in client.frames)
            assert client.data(3) == b"echo:hello" and client.finished(3)
            assert client.data(1) == b""
            # a port nothing listens on: the error stream says so, then both streams end
            await client.open(5, "error", 81, "1")
            await client.open(7, "data", 81, "1")
            await client.until(lambda fs: client.finished(5))
            assert b"connection refused" in client.data(5)
            assert client.finished(7)
    echo.close()


async def test_only_the_api_server_may_call(tmp_path: Path) -> None:
    tls = certs.ensure_cluster_tls(tmp_path / "tls", certs.serving_sans())
    crt, key = map(str, tls.serving)
    port = free_port()
    runner = await server.start(
        FakeBackend(tmp_path),
        "127.0.0.1",
        port,
        server.ssl_context(crt, key, str(tls.client_ca[0])),
    )
    url = f"https://127.0.0.1:{port}/containerLogs/ns/p/app"

    def client_ctx(cn: str, groups: tuple[str, ...]) -> ssl.SSLContext:
        cert, key = certs.sign_client_cert(tls, cn, groups)
        (tmp_path / "c.crt").write_bytes(cert)
        (tmp_path / "c.key").write_bytes(key)
        ctx = ssl.create_default_context(cafile=str(tls.server_ca[0]))
        ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
        return ctx

    try:
        async with aiohttp.ClientSession() as session:
            node = client_ctx("system:node:n1", ("system:nodes",))
            async with session.get(url, ssl=node) as resp:
                assert resp.status == 403
            apiserver = client_ctx(server.API_SERVER_USER, ())
            async with session.get(url, ssl=apiserver) as resp:
                assert resp.status == 404  # past the check: the fake has no such log
    finally:
        await runner.cleanup()


async def test_port_forward_channels(agent: tuple[str, FakeBackend]) -> None:
    """The Python client's protocol: `?ports=`, channels 2i/2i+1, the port announced first."""
    base, backend = agent
    echo, echo_port = await echo_server()
    backend.ports[80] = echo_port
    got: dict[int, bytes] = {}
    url = f"{base}/portForward/ns/p?ports=80,81"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=[websocket.V4]) as ws:
            assert ws.protocol == websocket.V4
            await ws.send_bytes(b"\x00hi")
            async with asyncio.timeout(10):
                while not (got.get(0, b"").endswith(b"hi") and b"refused" in got.get(3, b"")):
                    msg = await ws.receive()
                    got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
    echo.close()
    assert got[0] == b"\x50\x00echo:hi"
    assert got[1] == b"\x50\x00"
    assert got[2] == b"\x51\x00"
    assert got[3].startswith(b"\x51\x00error forwarding port 81 to pod")
