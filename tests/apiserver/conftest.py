"""A real API server on a loopback port (memory store, plain HTTP) and a small JSON client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from support import free_port

from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.storage.memory import MemoryStore


class Client:
    """Just enough HTTP to drive the server: JSON in, (status, JSON) out."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        hdrs = {"Content-Type": content_type, **(headers or {})}
        async with self.session.request(method, self.base + path, data=data, headers=hdrs) as resp:
            text = await resp.read()
            try:
                parsed = orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                parsed = text.decode()
            return resp.status, parsed, resp

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await self.request("GET", path, **kw)
        return status, body

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        status, out, _ = await self.request("POST", path, body, **kw)
        return status, out

    async def put(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        status, out, _ = await self.request("PUT", path, body, **kw)
        return status, out

    async def patch(self, path: str, body: Any, patch_type: str) -> tuple[int, Any]:
        status, out, _ = await self.request("PATCH", path, body, content_type=patch_type)
        return status, out

    async def delete(self, path: str, body: Any = None) -> tuple[int, Any]:
        status, out, _ = await self.request("DELETE", path, body)
        return status, out


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    config = APIServerConfig(store=MemoryStore(), port=free_port())
    srv, runner = await start(config)
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(f"http://127.0.0.1:{server.config.port}", session)
        await asyncio.sleep(0)
