"""A real API server on a loopback port (memory store, plain HTTP), and both clients over it.

`any_client` is parametrized over the in-process and the HTTP client, so every
behaviour test runs against both and they cannot drift apart.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from nanokube.api.kinds import Kind
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client import kinds
from nanokube.client.http import HTTPClient
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import Client
from nanokube.storage.memory import MemoryStore

CONFIG_MAP = kinds.by_kind("v1", "ConfigMap")
POD = kinds.by_kind("v1", "Pod")
EVENT = kinds.by_kind("v1", "Event")
NAMESPACE = kinds.by_kind("v1", "Namespace")
# Leases are declared by the resources work; until then a minimal declaration
# (validated by the Kubernetes schema all the same) stands in.
LEASE = kinds.by_kind("coordination.k8s.io/v1", "Lease") or Kind(
    group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", namespaced=True
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(**config: object) -> tuple[APIServer, object]:
    srv, runner = await start(
        APIServerConfig(store=MemoryStore(), port=free_port(), **config)  # type: ignore[arg-type]
    )
    if srv.registry.by_kind(LEASE.api_version, LEASE.kind) is None:
        srv.registry.add(LEASE)
    return srv, runner


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start_server()
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()  # type: ignore[attr-defined]


def in_process(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch)


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
