"""The node IPAM controller and its CIDR set.

Aspects: subnets handed out in order and marked used, full set, release; the
controller gives each Node a /24 (podCIDR and podCIDRs), keeps CIDRs nodes
already hold (rebuilt at start, never handed out twice), frees a CIDR when
its node is deleted, and does not reuse it at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from controller_harness import eventually, running

from nanokube.api.resources.core_node import NODE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.controllers.nodeipam import CIDRSet, NodeIPAMController

Obj = dict[str, Any]


def node(name: str, cidr: str = "") -> Obj:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


async def cidr_of(client: InProcessClient, name: str) -> str:
    spec = (await client.get(NODE, name)).get("spec") or {}
    if spec.get("podCIDR"):
        assert spec["podCIDRs"] == [spec["podCIDR"]]
    return str(spec.get("podCIDR") or "")


def test_cidr_set_allocates_in_order_until_full() -> None:
    cidrs = CIDRSet("10.42.0.0/22", 24)
    assert cidrs.size == 4
    assert cidrs.occupy("10.42.1.0/24")
    assert [cidrs.allocate() for _ in range(4)] == [
        "10.42.0.0/24",
        "10.42.2.0/24",
        "10.42.3.0/24",
        None,
    ]
    cidrs.release("10.42.2.0/24")
    assert cidrs.allocate() == "10.42.2.0/24"


def test_cidr_set_ignores_foreign_cidrs_and_rejects_bad_masks() -> None:
    cidrs = CIDRSet("10.42.0.0/16", 24)
    assert not cidrs.occupy("192.168.0.0/24")
    assert not cidrs.occupy("10.42.0.0/25")
    assert not cidrs.occupy("not a cidr")
    assert len(cidrs) == 0
    with pytest.raises(ValueError):
        CIDRSet("10.42.0.0/16", 8)


def test_cidr_set_does_not_reuse_a_released_cidr_at_once() -> None:
    cidrs = CIDRSet("10.42.0.0/16", 24)
    first = cidrs.allocate()
    assert first is not None
    cidrs.release(first)
    assert cidrs.allocate() == "10.42.1.0/24"


async def test_each_node_gets_its_own_pod_cidr(
    client: InProcessClient, informers: SharedInformerFactory
) -> None:
    ipam = NodeIPAMController(client, informers)
    async with running(informers, ipam):
        for i in range(3):
            await client.create(NODE, node(f"n{i}"))
        cidrs = [await eventually(lambda i=i: cidr_of(client, f"n{i}")) for i in range(3)]
    assert sorted(cidrs) == ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]


async def test_existing_cidrs_are_kept_and_never_handed_out_again(
    client: InProcessClient, informers: SharedInformerFactory
) -> None:
    await client.create(NODE, node("old-a", "10.42.0.0/24"))
    await client.create(NODE, node("old-b", "10.42.1.0/24"))
    await client.create(NODE, node("new"))
    ipam = NodeIPAMController(client, informers)
    async with running(informers, ipam):
        assert await eventually(lambda: cidr_of(client, "new")) == "10.42.2.0/24"
    assert await cidr_of(client, "old-a") == "10.42.0.0/24"


async def test_a_deleted_nodes_cidr_is_released(
    client: InProcessClient, informers: SharedInformerFactory
) -> None:
    ipam = NodeIPAMController(client, informers, cluster_cidr="10.42.0.0/23")
    async with running(informers, ipam):
        await client.create(NODE, node("a"))
        await client.create(NODE, node("b"))
        a = await eventually(lambda: cidr_of(client, "a"))
        await eventually(lambda: cidr_of(client, "b"))
        await client.delete(NODE, "a")

        async def released() -> bool:
            return len(ipam.cidrs) == 1

        await eventually(released)
        await client.create(NODE, node("c"))
        assert await eventually(lambda: cidr_of(client, "c")) == a


async def test_a_full_cluster_cidr_leaves_the_node_without_and_says_so(
    client: InProcessClient, informers: SharedInformerFactory
) -> None:
    from nanokube.api.resources.core_event import EVENT

    ipam = NodeIPAMController(client, informers, cluster_cidr="10.42.0.0/24")
    async with running(informers, ipam):
        await client.create(NODE, node("a"))
        await eventually(lambda: cidr_of(client, "a"))
        await client.create(NODE, node("b"))

        async def warned() -> bool:
            events = (await client.list(EVENT, "default"))["items"]
            return any(e["reason"] == "CIDRNotAvailable" for e in events)

        await eventually(warned)
    assert await cidr_of(client, "b") == ""
