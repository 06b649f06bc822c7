"""The Endpoints controller against a real API server (pod status written by the test).

Aspects: ready and not-ready addresses with nodeName and targetRef, named
target ports resolved per pod, labels (the Service's, managed-by, headless)
and the last-change-trigger-time annotation; readiness changes, deleted and
terminating pods, pods without an IP or the port; publishNotReadyAddresses;
headless Services without ports; Services without a selector left alone;
the Endpoints removed with its Service, recreated when deleted, leftovers
removed at start; repacking and truncation as pure functions.
"""

from __future__ import annotations

from typing import Any

import pytest
from controller_harness import eventually, running
from service_helpers import make_pod, make_service, set_status

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_service import ENDPOINTS, SERVICE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.endpoints import (
    MAX_CAPACITY,
    EndpointsController,
    repack_subsets,
    truncate,
)

CLIENTS = ("in-process", "http")
Obj = dict[str, Any]


async def subsets_of(client: Client, wanted: list[Obj], name: str = "web") -> Obj:
    async def check() -> Obj:
        try:
            ep = await client.get(ENDPOINTS, name, "default")
        except errors.NotFound:
            raise AssertionError("no endpoints yet") from None
        assert ep.get("subsets", []) == wanted, ep.get("subsets")
        return ep

    return await eventually(check)


def addr(ip: str, pod: Obj, node: str = "node-1") -> Obj:
    md = pod["metadata"]
    return {
        "ip": ip,
        "nodeName": node,
        "targetRef": {"kind": "Pod", "namespace": "default", "name": md["name"], "uid": md["uid"]},
    }


HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"


async def test_ready_and_not_ready_addresses(
    client: Client, informers: SharedInformerFactory
) -> None:
    svc = await make_service(client)
    b = await make_pod(client, "b", "10.42.0.12")
    a = await make_pod(client, "a", "10.42.0.11")
    c = await make_pod(client, "c", "10.42.0.13", ready=False)
    c = await set_status(client, c, ip="10.42.0.13", ready=False, since="2020-01-01T00:00:00Z")
    await make_pod(client, "no-ip", None)
    async with running(informers, EndpointsController(client, informers)):
        wanted = [
            {
                "addresses": [addr("10.42.0.11", a), addr("10.42.0.12", b)],
                "notReadyAddresses": [addr("10.42.0.13", c)],
                "ports": HTTP,
            }
        ]
        ep = await subsets_of(client, wanted)
        assert ep["metadata"]["labels"] == {
            "team": "a",
            "endpoints.kubernetes.io/managed-by": "endpoint-controller",
        }
        annotations = ep["metadata"]["annotations"]
        assert (
            annotations["endpoints.kubernetes.io/last-change-trigger-time"]
            == (svc["metadata"]["creationTimestamp"])
        )

        c = await set_status(client, c, ip="10.42.0.13", ready=True)
        wanted = [
            {
                "addresses": [addr("10.42.0.11", a), addr("10.42.0.12", b), addr("10.42.0.13", c)],
                "ports": HTTP,
            }
        ]
        ep = await subsets_of(client, wanted)
        # The change that caused this write: c's Ready transition.
        assert (
            ep["metadata"]["annotations"][TRIGGER]
            == (c["status"]["conditions"][0]["lastTransitionTime"])
        )

        await client.delete(POD, "b", "default", grace_period_seconds=0)
        wanted = [{"addresses": [addr("10.42.0.11", a), addr("10.42.0.13", c)], "ports": HTTP}]
        await subsets_of(client, wanted)


async def test_terminating_and_finished_pods_leave(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client)
    a = await make_pod(client, "a", "10.42.0.11", finalizers=["test/hold"])
    b = await make_pod(client, "b", "10.42.0.12")
    async with running(informers, EndpointsController(client, informers)):
        await subsets_of(
            client, [{"addresses": [addr("10.42.0.11", a), addr("10.42.0.12", b)], "ports": HTTP}]
        )
        await client.delete(POD, "a", "default")  # held by its finalizer: terminating
        await set_status(client, b, ip="10.42.0.12", ready=False, phase="Succeeded")
        await subsets_of(client, [])


async def test_publish_not_ready_addresses(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client, publishNotReadyAddresses=True)
    a = await make_pod(client, "a", "10.42.0.11", ready=False)
    async with running(informers, EndpointsController(client, informers)):
        await subsets_of(client, [{"addresses": [addr("10.42.0.11", a)], "ports": HTTP}])


async def test_named_ports_resolve_per_pod(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(
        client,
        ports=[
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9100},
        ],
    )
    a = await make_pod(client, "a", "10.42.0.11")
    b = await make_pod(client, "b", "10.42.0.12", ports=[{"name": "http", "containerPort": 8081}])
    other = await make_pod(client, "c", "10.42.0.13", ports=[])
    async with running(informers, EndpointsController(client, informers)):
        metrics = {"name": "metrics", "port": 9100, "protocol": "TCP"}
        all_three = [addr("10.42.0.11", a), addr("10.42.0.12", b), addr("10.42.0.13", other)]
        wanted = [  # one subset per set of addresses offering the same ports
            {"addresses": all_three, "ports": [metrics]},
            {"addresses": [addr("10.42.0.11", a)], "ports": HTTP},
            {
                "addresses": [addr("10.42.0.12", b)],
                "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}],
            },
        ]
        ep = await client_subsets(client)
        assert sorted(ep, key=str) == sorted(wanted, key=str)


async def client_subsets(client: Client) -> list[Obj]:
    async def check() -> list[Obj] | None:
        try:
            ep = await client.get(ENDPOINTS, "web", "default")
        except errors.NotFound:
            return None
        subsets: list[Obj] = ep.get("subsets") or []
        return subsets if len(subsets) == 3 else None

    return await eventually(check)


async def test_headless_service_without_ports(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client, clusterIP="None", ports=[])
    a = await make_pod(client, "a", "10.42.0.11", hostname="a", subdomain="web")
    async with running(informers, EndpointsController(client, informers)):
        wanted_addr = {**addr("10.42.0.11", a), "hostname": "a"}
        ep = await subsets_of(client, [{"addresses": [wanted_addr]}])
        assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


async def test_services_without_selectors_are_left_alone(
    client: Client, informers: SharedInformerFactory
) -> None:
    await make_service(client, "manual", selector=None)
    await make_service(client, "auto")
    a = await make_pod(client, "a", "10.42.0.11")
    manual = {
        "metadata": {"name": "manual", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}],
    }
    await client.create(ENDPOINTS, manual)
    async with running(informers, EndpointsController(client, informers)):
        await subsets_of(client, [{"addresses": [addr("10.42.0.11", a)], "ports": HTTP}], "auto")
        ep = await client.get(ENDPOINTS, "manual", "default")
        assert "endpoints.kubernetes.io/managed-by" not in ep["metadata"].get("labels", {})


async def test_endpoints_follow_the_service_lifecycle(
    client: Client, informers: SharedInformerFactory
) -> None:
    leftover = {"metadata": {"name": "gone", "namespace": "default"}}
    await client.create(ENDPOINTS, leftover)
    await make_service(client)
    a = await make_pod(client, "a", "10.42.0.11")
    async with running(informers, EndpointsController(client, informers)):
        wanted = [{"addresses": [addr("10.42.0.11", a)], "ports": HTTP}]
        first = await subsets_of(client, wanted)

        async def gone(name: str) -> bool:
            try:
                await client.get(ENDPOINTS, name, "default")
            except errors.NotFound:
                return True
            return False

        await eventually(lambda: gone("gone"))
        await client.delete(ENDPOINTS, "web", "default")
        again = await subsets_of(client, wanted)
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        await client.delete(SERVICE, "web", "default")
        await eventually(lambda: gone("web"))


def test_repack_merges_addresses_sharing_ports() -> None:
    a: Obj = {"ip": "10.0.0.2"}
    b: Obj = {"ip": "10.0.0.1"}
    p80: Obj = {"name": "a", "port": 80, "protocol": "TCP"}
    p81: Obj = {"name": "b", "port": 81, "protocol": "TCP"}
    entries: list[tuple[Obj, bool, Obj | None]] = [
        (a, True, p80),
        (a, True, p81),
        (b, False, p80),
        (b, True, p80),
        (b, True, p81),
    ]
    assert repack_subsets(entries) == [{"addresses": [b, a], "ports": [p80, p81]}]
    only: list[tuple[Obj, bool, Obj | None]] = [(a, True, p80), (b, False, p81)]
    assert repack_subsets(only) == [
        {"addresses": [a], "ports": [p80]},
        {"notReadyAddresses": [b], "ports": [p81]},
    ]


@pytest.mark.parametrize(("ready", "not_ready"), [(800, 400), (1200, 10)])
def test_truncation_keeps_ready_addresses_first(ready: int, not_ready: int) -> None:
    subsets = [
        {
            "addresses": [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(ready)],
            "notReadyAddresses": [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(not_ready)],
        }
    ]
    assert truncate(subsets)
    kept_ready = len(subsets[0].get("addresses") or [])
    kept_not_ready = len(subsets[0].get("notReadyAddresses") or [])
    assert kept_ready + kept_not_ready == MAX_CAPACITY
    assert kept_ready == min(ready, MAX_CAPACITY)
    assert not truncate([{"addresses": [{"ip": "10.0.0.1"}]}])
