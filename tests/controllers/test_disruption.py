"""The disruption controller against a real API server.

Aspects: minAvailable as an int (expected = the pods); percent and
maxUnavailable budgets over the scale of the pods' controllers (a Deployment
through its ReplicaSet, a StatefulSet); the DisruptionAllowed condition and
observedGeneration; unmanaged pods; pods recorded by an eviction in
`disruptedPods` not counted healthy until the entry expires; the fail-safe
status when a controller cannot be found; eviction and controller together.
"""

from __future__ import annotations

from typing import Any

import pytest
from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api import errors, meta
from nanokube.api.resources.apps import DEPLOYMENT, REPLICA_SET, STATEFUL_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.groups import POD_DISRUPTION_BUDGET
from nanokube.apiserver import eviction, patching
from nanokube.apiserver.server import APIServer
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import Client
from nanokube.controllers.disruption import DisruptionController, scaled_value

CLIENTS = ("in-process", "http")
Obj = dict[str, Any]
LABELS = {"app": "web"}


def pdb(name: str = "web", **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": LABELS}, **spec},
    }


async def make_pods(client: Client, count: int, owner: Obj | None = None) -> list[Obj]:
    made = []
    for i in range(count):
        md: Obj = {"name": f"web-{i}", "namespace": "default", "labels": LABELS}
        if owner is not None:
            md["ownerReferences"] = [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": meta.name(owner),
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ]
        made.append(
            await client.create(
                POD, {"metadata": md, "spec": {"containers": [{"name": "c", "image": "x"}]}}
            )
        )
    return made


async def status_of(client: Client, name: str = "web", **wanted: Any) -> Obj:
    async def check() -> Obj | None:
        got = (await client.get(POD_DISRUPTION_BUDGET, name, "default")).get("status") or {}
        if all(got.get(k) == v for k, v in wanted.items()):
            return got
        raise AssertionError(f"status {got} is not {wanted}")

    return await eventually(check)


def test_scaled_values() -> None:
    assert scaled_value(2, 10) == 2
    assert scaled_value("50%", 3) == 2
    assert scaled_value("0%", 3) == 0
    assert scaled_value("100%", 7) == 7


async def test_min_available_int_counts_ready_pods(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    pods = await make_pods(client, 3)
    await kubelet.ready(pods[:2])
    created = await client.create(POD_DISRUPTION_BUDGET, pdb(minAvailable=2))
    async with running(informers, DisruptionController(client, informers)):
        status = await status_of(
            client, currentHealthy=2, desiredHealthy=2, expectedPods=3, disruptionsAllowed=0
        )
        assert status["observedGeneration"] == created["metadata"]["generation"]
        cond = status["conditions"][0]
        assert (cond["type"], cond["status"], cond["reason"]) == (
            "DisruptionAllowed",
            "False",
            "InsufficientPods",
        )
        await kubelet.ready(pods[2:])
        status = await status_of(client, currentHealthy=3, disruptionsAllowed=1)
        cond = status["conditions"][0]
        assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")
        assert cond["lastTransitionTime"]


async def test_max_unavailable_uses_the_deployment_scale(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    template = pod_template(LABELS)
    spec = {"replicas": 4, "selector": {"matchLabels": LABELS}, "template": template}
    deployment = await client.create(
        DEPLOYMENT, {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}
    )
    rs = await client.create(
        REPLICA_SET,
        {
            "metadata": {
                "name": "web-abc",
                "namespace": "default",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {**spec, "replicas": 3},  # the Deployment's scale counts, not the RS's
        },
    )
    await kubelet.ready(await make_pods(client, 3, rs))
    await client.create(POD_DISRUPTION_BUDGET, pdb(maxUnavailable="50%"))
    async with running(informers, DisruptionController(client, informers)):
        await status_of(
            client, expectedPods=4, desiredHealthy=2, currentHealthy=3, disruptionsAllowed=1
        )


async def test_min_available_percent_of_a_stateful_set(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    sts = await client.create(
        STATEFUL_SET,
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "serviceName": "web",
                "selector": {"matchLabels": LABELS},
                "template": pod_template(LABELS),
            },
        },
    )
    await kubelet.ready(await make_pods(client, 3, sts))
    await client.create(POD_DISRUPTION_BUDGET, pdb(minAvailable="50%"))
    async with running(informers, DisruptionController(client, informers)):
        await status_of(
            client, expectedPods=3, desiredHealthy=2, currentHealthy=3, disruptionsAllowed=1
        )


async def test_unmanaged_pods_and_no_pods_events(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    await kubelet.ready(await make_pods(client, 2))
    await client.create(POD_DISRUPTION_BUDGET, pdb(minAvailable="50%"))
    await client.create(
        POD_DISRUPTION_BUDGET,
        {"metadata": {"name": "none"}, "spec": {"selector": {"matchLabels": {"app": "x"}}}},
        "default",
    )
    async with running(informers, DisruptionController(client, informers)):
        await status_of(client, expectedPods=0, currentHealthy=2, disruptionsAllowed=0)

        async def reasons() -> set[str] | None:
            events = (await client.list(EVENT, "default"))["items"]
            got = {e["reason"] for e in events}
            return got if {"UnmanagedPods", "NoPods"} <= got else None

        await eventually(reasons)


async def test_fail_safe_when_the_controller_is_missing(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    ghost = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "gone", "uid": "u1"},
    }
    await kubelet.ready(await make_pods(client, 2, ghost))
    await client.create(POD_DISRUPTION_BUDGET, pdb(maxUnavailable=1))
    async with running(informers, DisruptionController(client, informers)):
        status = await status_of(client, disruptionsAllowed=0)

        async def failed() -> Obj | None:
            got = (await client.get(POD_DISRUPTION_BUDGET, "web", "default"))["status"]
            cond = got["conditions"][0]
            return cond if cond["reason"] == "SyncFailed" else None

        cond = await eventually(failed)
        assert cond["status"] == "False"
        assert 'found no controllers for pod "web-' in cond["message"]
        assert status["disruptionsAllowed"] == 0


async def test_disrupted_pods_are_not_healthy_until_they_expire(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    await kubelet.ready(await make_pods(client, 3))
    budget = await client.create(POD_DISRUPTION_BUDGET, pdb(minAvailable=1))
    budget["status"] = {"disruptedPods": {"web-0": meta.now_rfc3339()}}
    await client.update(POD_DISRUPTION_BUDGET, budget, subresource="status")
    controller = DisruptionController(client, informers)
    async with running(informers, controller):
        status = await status_of(client, currentHealthy=2, disruptionsAllowed=1)
        assert list(status["disruptedPods"]) == ["web-0"]
        real_now = controller.now
        controller.now = lambda: real_now() + 121  # the eviction never led to a deletion
        controller.enqueue(await client.get(POD_DISRUPTION_BUDGET, "web", "default"))
        status = await status_of(client, currentHealthy=3, disruptionsAllowed=2)
        assert "disruptedPods" not in status


async def test_evictions_spend_the_budget_the_controller_computes(
    server: APIServer, client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    evictor = InProcessClient(
        server.resources, patching.patch, {("pods", "eviction"): eviction.evict}
    )
    pods = await make_pods(client, 3)
    await kubelet.ready(pods)
    await client.create(POD_DISRUPTION_BUDGET, pdb(minAvailable=2))
    body = {"metadata": {"name": "web-0", "namespace": "default"}}
    async with running(informers, DisruptionController(client, informers)):
        await status_of(client, disruptionsAllowed=1)
        await evictor.create_subresource(POD, "web-0", "default", "eviction", body)
        await status_of(client, currentHealthy=2, disruptionsAllowed=0)
        body = {"metadata": {"name": "web-1", "namespace": "default"}}
        with pytest.raises(errors.TooManyRequests):
            await evictor.create_subresource(POD, "web-1", "default", "eviction", body)


async def test_a_stale_disruption_target_is_cleared(
    client: Client, informers: SharedInformerFactory
) -> None:
    (pod,) = await make_pods(client, 1)
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            }
        ],
    }
    await client.update(POD, pod, subresource="status")
    async with running(informers, DisruptionController(client, informers)):

        async def cleared() -> Obj | None:
            got = await client.get(POD, "web-0", "default")
            cond = got["status"]["conditions"][0]
            return cond if cond["status"] == "False" else None

        cond = await eventually(cleared)
        assert cond["type"] == "DisruptionTarget" and "reason" not in cond
