"""The node lifecycle controller against a real API server, with simulated nodes.

Aspects: taint and toleration rules as pure functions; a silent node (its
simulated kubelet stopped) becomes Ready=Unknown with upstream's reason and
message, gets the unreachable NoSchedule and NoExecute taints, its pods turn
not ready and are evicted when their toleration runs out (at once without
one, later with `tolerationSeconds`, never with an unlimited one); when the
node comes back its taints go; a node reporting Ready=False gets the
not-ready taints; NodeNotReady/NodeReady and TaintManagerEviction events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from controller_harness import eventually

from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.core_node import NODE
from nanokube.apiserver import binding, patching
from nanokube.apiserver.server import APIServer
from nanokube.apiserver.tolerations import default_tolerations
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.controllers.nodeipam import NodeIPAMController
from nanokube.controllers.nodelifecycle import (
    NodeLifecycleController,
    NodeLifecycleOptions,
    desired_taints,
    reconcile_taints,
    tolerates,
    toleration_seconds,
)
from nanokube.kubelet.simulated import SimulatedNodeOptions, SimulatedNodes

Obj = dict[str, Any]
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


def test_toleration_matching() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute"}
    assert tolerates({"key": UNREACHABLE, "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v"})


def test_toleration_seconds() -> None:
    taints = [{"key": UNREACHABLE, "effect": "NoExecute"}]
    assert toleration_seconds([], taints) == 0
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    assert toleration_seconds(forever, taints) is None
    limited = [
        {**forever[0], "tolerationSeconds": 30},
        {"operator": "Exists", "tolerationSeconds": 5},
    ]
    assert toleration_seconds(limited, taints) == 5
    assert toleration_seconds([{**forever[0], "tolerationSeconds": -1}], taints) == 0


def test_taints_follow_conditions_and_keep_foreign_ones() -> None:
    def node(ready: str, **spec: Any) -> Obj:
        return {"spec": spec, "status": {"conditions": [{"type": "Ready", "status": ready}]}}

    assert desired_taints(node("True")) == []
    assert set(desired_taints(node("False"))) == {
        (NOT_READY, "NoSchedule"),
        (NOT_READY, "NoExecute"),
    }
    assert set(desired_taints(node("Unknown", unschedulable=True))) == {
        (UNREACHABLE, "NoSchedule"),
        (UNREACHABLE, "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    mine = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    stale = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}
    assert reconcile_taints(node("True", taints=[mine, stale]), "now") == [mine]
    added = reconcile_taints(node("Unknown", taints=[stale]), "now")
    assert stale in added  # kept, with its original timeAdded
    assert {"key": UNREACHABLE, "effect": "NoSchedule"} in added


def test_default_toleration_seconds_admission() -> None:
    pod: Obj = {"spec": {"containers": []}}
    default_tolerations(pod)
    assert pod["spec"]["tolerations"] == [
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    default_tolerations(pod)
    assert len(pod["spec"]["tolerations"]) == 2
    everything: Obj = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    default_tolerations(everything, 10, 20)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    own: Obj = {
        "spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]}
    }
    default_tolerations(own, 10, 20)
    assert [t.get("tolerationSeconds") for t in own["spec"]["tolerations"]] == [None, 10]


@contextlib.asynccontextmanager
async def cluster(
    server: APIServer, count: int = 1, grace: float = 1.0
) -> AsyncIterator[tuple[InProcessClient, SimulatedNodes]]:
    """Simulated nodes, IPAM and the node lifecycle controller with a short grace period."""
    client = InProcessClient(server.resources, patching.patch, {("pods", "binding"): binding.bind})
    informers = SharedInformerFactory(client)
    nodes = SimulatedNodes(client, SimulatedNodeOptions(count=count, renew_interval=0.2), informers)
    options = NodeLifecycleOptions(
        node_monitor_grace_period=grace, node_startup_grace_period=grace, node_monitor_period=0.1
    )
    controllers = [
        NodeIPAMController(client, informers),
        NodeLifecycleController(client, informers, options),
    ]
    for c in controllers:
        c.start()
    task = asyncio.create_task(nodes.run())
    try:
        assert await nodes.wait_registered(10)
        yield client, nodes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for c in controllers:
            await c.stop()
        await informers.shutdown()


def pod(name: str, tolerations: list[Obj] | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "sim-0001"}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def unreachable(seconds: int | None) -> list[Obj]:
    t: Obj = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return [t]


async def ready_pod(client: InProcessClient, name: str) -> bool:
    p = await client.get(POD, name, "default")
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or ()
    )


async def taint_keys(client: InProcessClient) -> set[tuple[str, str]]:
    node = await client.get(NODE, "sim-0001")
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or ()}


async def test_a_silent_node_is_marked_unknown_tainted_and_emptied(server: APIServer) -> None:
    async with cluster(server) as (client, nodes):
        await client.create(POD, pod("at-once", unreachable(0)))
        await client.create(POD, pod("short", unreachable(1)))
        await client.create(POD, pod("forever", unreachable(None)))
        defaulted = await client.create(POD, pod("defaulted"))  # 300 s by admission
        assert unreachable(300)[0] in defaulted["spec"]["tolerations"]
        for name in ("at-once", "short", "forever", "defaulted"):
            await eventually(lambda name=name: ready_pod(client, name))
        await nodes.stop("sim-0001")

        async def unknown() -> Obj | None:
            node = await client.get(NODE, "sim-0001")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            return node if ready["status"] == "Unknown" else None

        node = await eventually(unknown)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."
        memory = next(c for c in node["status"]["conditions"] if c["type"] == "MemoryPressure")
        assert memory["status"] == "Unknown"

        async def tainted() -> bool:
            return await taint_keys(client) >= {
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
            }

        await eventually(tainted)

        async def deleting(name: str) -> bool:
            p = await client.get(POD, name, "default")
            return bool(p["metadata"].get("deletionTimestamp"))

        await eventually(lambda: deleting("at-once"))
        evicted = await client.get(POD, "at-once", "default")
        disruption = [c for c in evicted["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert disruption and disruption[0]["reason"] == "DeletionByTaintManager"
        await eventually(lambda: deleting("short"))
        for name in ("forever", "defaulted"):
            assert not await ready_pod(client, name)  # marked not ready, not evicted
            assert not await deleting(name)

        await nodes.start("sim-0001")

        async def healed() -> bool:
            return not await taint_keys(client)

        await eventually(healed)
        await eventually(lambda: ready_pod(client, "forever"))

        async def evicted_pods_gone() -> bool:
            names = {p["metadata"]["name"] for p in (await client.list(POD, "default"))["items"]}
            return names == {"forever", "defaulted"}

        await eventually(evicted_pods_gone)  # the node, back, confirmed the graceful deletes

        async def events() -> set[str]:
            reasons = {e["reason"] for e in (await client.list(EVENT, "default"))["items"]}
            return (
                reasons
                if {"NodeNotReady", "NodeReady", "TaintManagerEviction"} <= reasons
                else set()
            )

        await eventually(events)


async def test_a_node_reporting_not_ready_gets_the_not_ready_taints(server: APIServer) -> None:
    async with cluster(server, grace=60.0) as (client, nodes):
        await nodes.stop("sim-0001")  # so that it does not post Ready again
        node = await client.get(NODE, "sim-0001")
        for cond in node["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond.update(status="False", reason="KubeletNotReady", message="runtime down")
        await client.update(NODE, node, subresource="status")

        async def tainted() -> bool:
            return await taint_keys(client) == {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}

        await eventually(tainted)


async def test_pods_not_tolerating_a_user_no_execute_taint_are_evicted_at_once(
    server: APIServer,
) -> None:
    async with cluster(server, grace=60.0) as (client, _):
        await client.create(POD, pod("plain"))
        dedicated = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}
        await client.create(POD, pod("tolerant", [dedicated]))
        await eventually(lambda: ready_pod(client, "plain"))
        await eventually(lambda: ready_pod(client, "tolerant"))
        node = await client.get(NODE, "sim-0001")
        node["spec"]["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
        await client.update(NODE, node)

        async def names() -> set[str]:
            items = (await client.list(POD, "default"))["items"]
            return {p["metadata"]["name"] for p in items}

        async def only_tolerant_left() -> bool:
            return await names() == {"tolerant"}

        await eventually(only_tolerant_left)
        # The node's own taint is not the controller's: it stays.
        assert await taint_keys(client) == {("dedicated", "NoExecute")}
