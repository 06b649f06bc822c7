"""The namespace controller (with the garbage collector) against a real API server.

Aspects: deleting a namespace deletes everything in it and then the namespace
itself (through `/finalize`); content held by a finalizer keeps the namespace
Terminating, with upstream's conditions and messages, until it goes; the
conditions return to their "ok" variants once it has gone.
"""

from __future__ import annotations

from typing import Any

from controller_harness import eventually, running

from nanokube.api import errors
from nanokube.api.resources.core import CONFIG_MAP, NAMESPACE, SECRET
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.garbagecollector import GarbageCollector
from nanokube.controllers.namespace import NamespaceController, emptied_kinds

CLIENTS = ("in-process", "http")  # every test runs over both clients
Obj = dict[str, Any]


async def namespace_gone(client: Client, name: str) -> bool:
    try:
        await client.get(NAMESPACE, name)
    except errors.NotFound:
        return True
    return False


async def test_deleting_a_namespace_empties_and_removes_it(
    client: Client, informers: SharedInformerFactory
) -> None:
    controllers = (NamespaceController(client, informers), GarbageCollector(client, informers))
    async with running(informers, *controllers):
        await client.create(NAMESPACE, {"metadata": {"name": "team"}})
        await client.create(CONFIG_MAP, {"metadata": {"name": "a", "namespace": "team"}})
        await client.create(SECRET, {"metadata": {"name": "b", "namespace": "team"}})
        await client.create(CONFIG_MAP, {"metadata": {"name": "keep", "namespace": "default"}})
        await client.delete(NAMESPACE, "team")

        async def gone() -> bool:
            return await namespace_gone(client, "team")

        await eventually(gone)
        assert (await client.list(CONFIG_MAP, "team"))["items"] == []
        assert (await client.list(SECRET, "team"))["items"] == []
        assert (await client.get(CONFIG_MAP, "keep", "default"))["metadata"]["name"] == "keep"


async def test_content_held_by_a_finalizer_keeps_the_namespace_terminating(
    client: Client, informers: SharedInformerFactory
) -> None:
    async with running(informers, NamespaceController(client, informers)):
        await client.create(NAMESPACE, {"metadata": {"name": "team"}})
        await client.create(
            CONFIG_MAP,
            {"metadata": {"name": "held", "namespace": "team", "finalizers": ["example.com/hold"]}},
        )
        await client.delete(NAMESPACE, "team")

        async def conditions() -> dict[str, Obj] | None:
            ns = await client.get(NAMESPACE, "team")
            found = {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or ()}
            return found if "NamespaceFinalizersRemaining" in found else None

        found = await eventually(conditions)
        ns = await client.get(NAMESPACE, "team")
        assert ns["status"]["phase"] == "Terminating"
        assert ns["spec"]["finalizers"] == ["kubernetes"]
        remaining = found["NamespaceContentRemaining"]
        assert (remaining["status"], remaining["reason"]) == ("True", "SomeResourcesRemain")
        assert (
            remaining["message"]
            == "Some resources are remaining: configmaps. has 1 resource instances"
        )
        held = found["NamespaceFinalizersRemaining"]
        assert (held["status"], held["reason"]) == ("True", "SomeFinalizersRemain")
        assert held["message"] == (
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        )
        assert "NamespaceDeletionContentFailure" not in found

        cm = await client.get(CONFIG_MAP, "held", "team")
        assert cm["metadata"].get("deletionTimestamp")
        cm["metadata"]["finalizers"] = []
        await client.update(CONFIG_MAP, cm)

        async def gone() -> bool:
            return await namespace_gone(client, "team")

        await eventually(gone)


def test_every_namespaced_kind_is_emptied() -> None:
    kinds = {(k.api_version, k.kind) for k in emptied_kinds()}
    assert {("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "ConfigMap"), ("v1", "Event")} <= kinds
    assert ("v1", "Namespace") not in kinds and ("v1", "Node") not in kinds
