"""The garbage collector against a real API server.

Aspects: background cascading (dependents of a deleted owner go; a whole
Deployment → ReplicaSet → Pod tree goes), dependents naming an owner that
never existed, a dependent with a remaining owner only loses the dangling
reference, orphaning (references removed, dependents kept, then the owner
goes), foreground deletion (the owner stays until every blocking dependent is
gone, including one held by its own finalizer), and the graph's bookkeeping.
"""

from __future__ import annotations

from typing import Any

from controller_harness import eventually, pod_template, running

from nanokube.api import errors
from nanokube.api.resources.apps import DEPLOYMENT, REPLICA_SET
from nanokube.api.resources.core import CONFIG_MAP, POD
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.deployment import DeploymentController
from nanokube.controllers.garbagecollector import GarbageCollector, collected_kinds
from nanokube.controllers.gc_graph import Graph
from nanokube.controllers.replicaset import ReplicaSetController

CLIENTS = ("in-process", "http")  # every test runs over both clients
Obj = dict[str, Any]


def ref(owner: Obj, block: bool = False) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    }


async def config_map(client: Client, name: str, *owners: Obj, **md: Any) -> Obj:
    metadata: Obj = {"name": name, "namespace": "default", **md}
    if owners:
        metadata["ownerReferences"] = list(owners)
    return await client.create(CONFIG_MAP, {"metadata": metadata, "data": {"k": "v"}})


async def exists(client: Client, name: str) -> Obj | None:
    try:
        return await client.get(CONFIG_MAP, name, "default")
    except errors.NotFound:
        return None


def gone(client: Client, *names: str) -> Any:
    async def check() -> bool:
        return all([await exists(client, n) is None for n in names])

    return check


async def test_dependents_of_a_deleted_owner_are_deleted(
    client: Client, informers: SharedInformerFactory
) -> None:
    gc = GarbageCollector(client, informers)
    async with running(informers, gc):
        owner = await config_map(client, "owner")
        await config_map(client, "child-1", ref(owner))
        child = await config_map(client, "child-2", ref(owner))
        await config_map(client, "grandchild", ref(child))
        await client.delete(CONFIG_MAP, "owner", "default")
        await eventually(gone(client, "child-1", "child-2", "grandchild"))


async def test_a_dependent_of_an_owner_that_never_existed_is_deleted(
    client: Client, informers: SharedInformerFactory
) -> None:
    gc = GarbageCollector(client, informers)
    async with running(informers, gc):
        ghost = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ghost", "uid": "0000"},
        }
        await config_map(client, "stray", ref(ghost))
        await config_map(client, "unowned")
        await eventually(gone(client, "stray"))
        assert await exists(client, "unowned") is not None


async def test_a_remaining_owner_keeps_the_dependent(
    client: Client, informers: SharedInformerFactory
) -> None:
    gc = GarbageCollector(client, informers)
    async with running(informers, gc):
        first = await config_map(client, "first")
        second = await config_map(client, "second")
        await config_map(client, "shared", ref(first), ref(second))
        await client.delete(CONFIG_MAP, "first", "default")

        async def only_second() -> bool:
            obj = await exists(client, "shared")
            assert obj is not None
            refs = obj["metadata"].get("ownerReferences") or []
            return [r["name"] for r in refs] == ["second"]

        await eventually(only_second)


async def test_orphan_propagation_keeps_dependents(
    client: Client, informers: SharedInformerFactory
) -> None:
    gc = GarbageCollector(client, informers)
    async with running(informers, gc):
        owner = await config_map(client, "owner")
        await config_map(client, "child", ref(owner, block=True))
        await client.delete(CONFIG_MAP, "owner", "default", propagation_policy="Orphan")
        await eventually(gone(client, "owner"))
        child = await exists(client, "child")
        assert child is not None
        assert "ownerReferences" not in child["metadata"]


async def test_foreground_deletion_waits_for_blocking_dependents(
    client: Client, informers: SharedInformerFactory
) -> None:
    gc = GarbageCollector(client, informers)
    async with running(informers, gc):
        owner = await config_map(client, "owner")
        await config_map(client, "child", ref(owner, block=True))
        await config_map(client, "held", ref(owner, block=True), finalizers=["example.com/hold"])
        await client.delete(CONFIG_MAP, "owner", "default", propagation_policy="Foreground")
        await eventually(gone(client, "child"))

        async def held_marked() -> bool:
            held = await exists(client, "held")
            return bool(held and held["metadata"].get("deletionTimestamp"))

        await eventually(held_marked)
        current = await exists(client, "owner")
        assert current is not None and current["metadata"]["finalizers"] == ["foregroundDeletion"]

        held = await exists(client, "held")
        assert held is not None
        held["metadata"]["finalizers"] = []
        await client.update(CONFIG_MAP, held)
        await eventually(gone(client, "held", "owner"))


async def test_deleting_a_deployment_removes_its_replica_sets_and_pods(
    client: Client, informers: SharedInformerFactory
) -> None:
    controllers = (
        ReplicaSetController(client, informers),
        DeploymentController(client, informers),
        GarbageCollector(client, informers),
    )
    async with running(informers, *controllers):
        labels = {"app": "web"}
        await client.create(
            DEPLOYMENT,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": pod_template(labels),
                },
            },
        )

        async def pods_created() -> bool:
            return len((await client.list(POD, "default"))["items"]) == 2

        await eventually(pods_created)
        await client.delete(DEPLOYMENT, "web", "default", propagation_policy="Background")

        async def all_gone() -> bool:
            rss = (await client.list(REPLICA_SET, "default"))["items"]
            pods = (await client.list(POD, "default"))["items"]
            return not rss and not pods

        await eventually(all_gone)


def test_graph_tracks_owners_dependents_and_virtual_nodes() -> None:
    graph = Graph()
    owner: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "uid": "u1"}}
    child: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u2",
            "ownerReferences": [ref(owner, True)],
        },
    }
    work = graph.observe(child)
    # The owner is not known yet: a virtual node, to be checked.
    assert work.delete == {"u1"}
    virtual = graph.get("u1")
    assert virtual is not None and not virtual.observed and virtual.dependents == {"u2"}
    graph.observe(owner)
    assert graph.get("u1") is not None and graph.get("u1").observed  # type: ignore[union-attr]

    deleting = {
        **owner,
        "metadata": {
            **owner["metadata"],
            "deletionTimestamp": "x",
            "finalizers": ["foregroundDeletion"],
        },
    }
    work = graph.observe(deleting)
    assert work.delete == {"u1", "u2"}
    assert [d.uid for d in graph.blocking_dependents(graph.get("u1"))] == ["u2"]  # type: ignore[arg-type]

    # The dependent going unblocks the owner.
    assert graph.forget("u2").delete == {"u1"}
    assert graph.get("u1").dependents == set()  # type: ignore[union-attr]


def test_collected_kinds_cover_the_owned_kinds_and_skip_events() -> None:
    names = {(k.api_version, k.kind) for k in collected_kinds()}
    for expected in [
        ("v1", "Pod"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ControllerRevision"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Endpoints"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
    ]:
        assert expected in names
    assert ("v1", "Event") not in names
