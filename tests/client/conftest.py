"""A real API server on a loopback port (memory store, plain HTTP), and both clients over it.

`any_client` is parametrized over the in-process and the HTTP client, so every
behaviour test runs against both and they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from client_support import in_process, start_server

from nanokube.apiserver.server import APIServer
from nanokube.client.http import HTTPClient
from nanokube.client.interface import Client


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start_server()
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()  # type: ignore[attr-defined]


@pytest.fixture
async def http_client(server: APIServer) -> AsyncIterator[HTTPClient]:
    client = HTTPClient(f"http://127.0.0.1:{server.config.port}")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(params=["in-process", "http"])
async def any_client(request: pytest.FixtureRequest, server: APIServer) -> AsyncIterator[Client]:
    if request.param == "in-process":
        yield in_process(server)
        return
    client = HTTPClient(f"http://127.0.0.1:{server.config.port}")
    try:
        yield client
    finally:
        await client.close()
