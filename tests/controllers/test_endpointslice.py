"""The EndpointSlice controller against a real API server (pod status written by the test).

Aspects: a slice per Service named `<svc>-<random>` with the service-name and
managed-by labels, the Service's labels, an owner reference and the trigger
time annotation; endpoints with conditions (ready, serving, terminating),
nodeName, zone from the node's label and targetRef; the empty placeholder
slice; splitting at the per-slice maximum and refilling; one slice per port
set; Services without a selector; a deleted slice comes back; the tracker
that refuses a stale cache.
"""

from __future__ import annotations

from typing import Any

from controller_harness import eventually, running
from service_helpers import make_pod, make_service, set_status

from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import ENDPOINT_SLICE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.endpointslice import EndpointSliceController, SliceTracker

CLIENTS = ("in-process", "http")
Obj = dict[str, Any]
HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


async def slices(client: Client, service: str = "web") -> list[Obj]:
    items: list[Obj] = (
        await client.list(
            ENDPOINT_SLICE, "default", label_selector=f"kubernetes.io/service-name={service}"
        )
    )["items"]
    return items


async def wait_slices(client: Client, check: Any, service: str = "web") -> list[Obj]:
    async def probe() -> list[Obj]:
        got = await slices(client, service)
        assert check(got), got
        return got

    return await eventually(probe)


def addresses(items: list[Obj]) -> list[str]:
    return sorted(a for s in items for e in s.get("endpoints") or () for a in e["addresses"])


async def test_slice_shape_and_endpoint_conditions(
    client: Client, informers: SharedInformerFactory
) -> None:
    await client.create(
        NODE, {"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "z1"}}}
    )
    svc = await make_service(client)
    a = await make_pod(client, "a", "10.42.0.11")
    await make_pod(client, "b", "10.42.0.12", ready=False, node="node-2")
    await make_pod(client, "c", "10.42.0.13", finalizers=["test/hold"])
    await client.delete(POD, "c", "default")  # terminating, still listed
    async with running(informers, EndpointSliceController(client, informers)):
        (slice_,) = await wait_slices(client, lambda got: len(addresses(got)) == 3)
        md = slice_["metadata"]
        assert md["name"].startswith("web-") and len(md["name"]) == len("web-") + 5
        assert md["labels"] == {
            "team": "a",
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        assert md["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": "web",
                "uid": svc["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert md["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
        assert slice_["addressType"] == "IPv4"
        assert slice_["ports"] == HTTP
        by_name = {e["targetRef"]["name"]: e for e in slice_["endpoints"]}
        assert by_name["a"] == {
            "addresses": ["10.42.0.11"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "node-1",
            "zone": "z1",
            "targetRef": {
                "kind": "Pod",
                "namespace": "default",
                "name": "a",
                "uid": a["metadata"]["uid"],
            },
        }
        assert by_name["b"]["conditions"] == {
            "ready": False,
            "serving": False,
            "terminating": False,
        }
        assert "zone" not in by_name["b"]
        assert by_name["c"]["conditions"] == {"ready": False, "serving": True, "terminating": True}


async def test_placeholder_slice_when_nothing_backs_the_service(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client)
    async with running(informers, EndpointSliceController(client, informers)):
        (placeholder,) = await wait_slices(client, lambda got: len(got) == 1)
        assert not placeholder.get("endpoints")
        assert not placeholder.get("ports")
        await make_pod(client, "a", "10.42.0.11")
        (slice_,) = await wait_slices(client, lambda got: addresses(got) == ["10.42.0.11"])
        assert slice_["ports"] == HTTP
        await client.delete(POD, "a", "default", grace_period_seconds=0)
        (again,) = await wait_slices(client, lambda got: len(got) == 1 and not addresses(got))
        assert not again.get("ports")


async def test_slices_split_at_the_maximum_and_refill(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client)
    for i in range(5):
        await make_pod(client, f"p{i}", f"10.42.0.{10 + i}")
    controller = EndpointSliceController(client, informers)
    controller.max_endpoints_per_slice = 2
    async with running(informers, controller):
        got = await wait_slices(client, lambda got: len(addresses(got)) == 5)
        assert sorted(len(s["endpoints"]) for s in got) == [1, 2, 2]
        await client.delete(POD, "p0", "default", grace_period_seconds=0)
        await client.delete(POD, "p1", "default", grace_period_seconds=0)
        got = await wait_slices(client, lambda got: len(addresses(got)) == 3)
        assert all(len(s.get("endpoints") or ()) <= 2 for s in got)
        await make_pod(client, "p9", "10.42.0.99")
        got = await wait_slices(client, lambda got: len(addresses(got)) == 4)
        assert all(len(s.get("endpoints") or ()) <= 2 for s in got)


async def test_one_slice_per_port_set_and_readiness_updates(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client)
    await make_pod(client, "a", "10.42.0.11")
    b = await make_pod(client, "b", "10.42.0.12", ports=[{"name": "http", "containerPort": 9000}])
    async with running(informers, EndpointSliceController(client, informers)):
        got = await wait_slices(client, lambda got: len(addresses(got)) == 2)
        assert sorted(s["ports"][0]["port"] for s in got) == [8080, 9000]
        await set_status(client, b, ip="10.42.0.12", ready=False)

        def b_not_ready(got: list[Obj]) -> bool:
            return any(
                e["targetRef"]["name"] == "b" and not e["conditions"]["ready"]
                for s in got
                for e in s.get("endpoints") or ()
            )

        await wait_slices(client, b_not_ready)


async def test_services_without_selectors_get_no_slices(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client, "manual", selector=None)
    await make_service(client)
    await make_pod(client, "a", "10.42.0.11")
    async with running(informers, EndpointSliceController(client, informers)):
        await wait_slices(client, lambda got: len(got) == 1)
        assert await slices(client, "manual") == []


async def test_a_deleted_slice_comes_back(client: Client, informers: SharedInformerFactory) -> None:
    await make_service(client)
    await make_pod(client, "a", "10.42.0.11")
    async with running(informers, EndpointSliceController(client, informers)):
        (first,) = await wait_slices(client, lambda got: addresses(got) == ["10.42.0.11"])
        await client.delete(ENDPOINT_SLICE, first["metadata"]["name"], "default")

        def replaced(got: list[Obj]) -> bool:
            return (
                len(got) == 1
                and got[0]["metadata"]["uid"] != first["metadata"]["uid"]
                and addresses(got) == ["10.42.0.11"]
            )

        await wait_slices(client, replaced)


def test_tracker_refuses_a_cache_behind_our_writes() -> None:
    tracker = SliceTracker()
    written = {"metadata": {"name": "web-abcde", "resourceVersion": "7"}}
    tracker.wrote("default/web", written)
    assert tracker.stale("default/web", [])
    assert tracker.stale(
        "default/web", [{"metadata": {"name": "web-abcde", "resourceVersion": "6"}}]
    )
    assert not tracker.stale("default/web", [written])
    tracker.deleted("default/web", "web-abcde")
    assert tracker.stale("default/web", [written])
    assert not tracker.stale("default/web", [])
    tracker.wrote("default/web", written)
    tracker.observed_deletion("default/web", "web-abcde")
    assert not tracker.stale("default/web", [])
