"""What the client tests share: kinds, a server starter and the in-process client.

Kept out of `conftest.py` so test modules import it by a name no other test
directory uses.
"""

from __future__ import annotations

from support import free_port

from nanokube.api.kinds import Kind
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client import kinds
from nanokube.client.inprocess import InProcessClient
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


async def start_server(**config: object) -> tuple[APIServer, object]:
    srv, runner = await start(
        APIServerConfig(store=MemoryStore(), port=free_port(), **config)  # type: ignore[arg-type]
    )
    if srv.registry.by_kind(LEASE.api_version, LEASE.kind) is None:
        srv.registry.add(LEASE)
    return srv, runner


def in_process(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch)
