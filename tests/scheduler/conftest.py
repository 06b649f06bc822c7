"""A real API server (memory store) with `pods/binding` served, and an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import free_port

from nanokube.apiserver import binding, patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client.inprocess import InProcessClient
from nanokube.storage.memory import MemoryStore


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
    binding.register(srv.handler)
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
def client(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch, {("pods", "binding"): binding.bind})
