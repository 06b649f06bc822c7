"""Fixtures of the controller tests: a real API server (memory store), both clients
(in-process and HTTP), a shared informer factory and the stand-in kubelet of `controller_harness`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from controller_harness import Kubelet
from support import free_port

from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client.http import HTTPClient
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import Client
from nanokube.storage.memory import MemoryStore


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module with `CLIENTS = ("in-process", "http")` runs each test over both clients."""
    clients = getattr(metafunc.module, "CLIENTS", ("in-process",))
    if "client" in metafunc.fixturenames and len(clients) > 1:
        metafunc.parametrize("client", clients, indirect=True)


@pytest.fixture
async def client(request: pytest.FixtureRequest, server: APIServer) -> AsyncIterator[Client]:
    """The in-process client, or the HTTP client (the controllers must not tell them apart)."""
    if getattr(request, "param", "in-process") == "in-process":
        yield InProcessClient(server.resources, patching.patch)
        return
    http = HTTPClient(f"http://127.0.0.1:{server.config.port}")
    try:
        yield http
    finally:
        await http.close()


@pytest.fixture
async def informers(client: Client) -> AsyncIterator[SharedInformerFactory]:
    factory = SharedInformerFactory(client)
    try:
        yield factory
    finally:
        await factory.shutdown()


@pytest.fixture
async def kubelet(client: Client) -> AsyncIterator[Kubelet]:
    k = Kubelet(client)
    k.start()
    try:
        yield k
    finally:
        await k.stop()
