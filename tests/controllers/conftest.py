"""Fixtures of the controller tests: a real API server (memory store), an in-process
client, a shared informer factory and the stand-in kubelet of `controller_harness`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from controller_harness import Kubelet

from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.storage.memory import MemoryStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
def client(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch)


@pytest.fixture
async def informers(client: InProcessClient) -> AsyncIterator[SharedInformerFactory]:
    factory = SharedInformerFactory(client)
    try:
        yield factory
    finally:
        await factory.shutdown()


@pytest.fixture
async def kubelet(client: InProcessClient) -> AsyncIterator[Kubelet]:
    k = Kubelet(client)
    k.start()
    try:
        yield k
    finally:
        await k.stop()
