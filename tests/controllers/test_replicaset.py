"""The ReplicaSet controller against a real API server.

Aspects: keeping N pods (create from the template with generateName and a
controller reference, replace deleted pods, scale down), deletion order (not
ready pods go first), adoption of matching orphans and release of pods whose
labels stop matching, status counts (ready, available, fullyLabeled,
observedGeneration), events, and slow-start batching.
"""

from __future__ import annotations

from typing import Any

from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api import errors
from nanokube.api.resources.apps import REPLICA_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.replicaset import (
    ReplicaSetController,
    calculate_status,
    slow_start_batch,
)

CLIENTS = ("in-process", "http")  # every test runs over both clients
Obj = dict[str, Any]
LABELS = {"app": "web"}


def replica_set(name: str = "web", replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": pod_template(LABELS),
            **spec,
        },
    }


async def owned_pods(client: Client, rs: Obj) -> list[Obj]:
    pods = (await client.list(POD, "default"))["items"]
    uid = rs["metadata"]["uid"]
    return [
        p
        for p in pods
        if any(r["uid"] == uid for r in p["metadata"].get("ownerReferences") or ())
        and not p["metadata"].get("deletionTimestamp")
    ]


async def wait_pods(client: Client, rs: Obj, count: int) -> list[Obj]:
    async def check() -> list[Obj] | None:
        pods = await owned_pods(client, rs)
        return pods if len(pods) == count else None

    if count == 0:

        async def none_left() -> bool:
            return not await owned_pods(client, rs)

        await eventually(none_left)
        return []
    return await eventually(check)


async def test_creates_replicas_from_template(
    client: Client, informers: SharedInformerFactory
) -> None:
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        rs = await client.create(REPLICA_SET, replica_set())
        pods = await wait_pods(client, rs, 3)
        for pod in pods:
            md = pod["metadata"]
            assert md["name"].startswith("web-") and len(md["name"]) == len("web-") + 5
            assert md["labels"] == LABELS
            assert md["ownerReferences"] == [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web",
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            assert pod["spec"]["containers"][0]["image"] == "nginx:1.25"

        async def status_written() -> Obj | None:
            current = await client.get(REPLICA_SET, "web", "default")
            status = current.get("status") or {}
            # The first status may be written before the informer saw the new pods
            # (replicas 0); it converges, as upstream's does.
            done = status.get("observedGeneration") == 1 and status.get("replicas") == 3
            return status if done else None

        status = await eventually(status_written)
        assert status["replicas"] == 3
        assert status["fullyLabeledReplicas"] == 3
        assert "readyReplicas" not in status

        async def events() -> list[str] | None:
            items = (await client.list(EVENT, "default"))["items"]
            msgs = sorted(e["message"] for e in items if e["reason"] == "SuccessfulCreate")
            return msgs if len(msgs) == 3 else None

        messages = await eventually(events)
        assert messages == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)


async def test_replaces_deleted_pods_and_scales_down(
    client: Client, informers: SharedInformerFactory
) -> None:
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        rs = await client.create(REPLICA_SET, replica_set(replicas=2))
        pods = await wait_pods(client, rs, 2)
        await client.delete(POD, pods[0]["metadata"]["name"], "default")
        replaced = await wait_pods(client, rs, 2)
        assert pods[0]["metadata"]["name"] not in {p["metadata"]["name"] for p in replaced}

        await client.patch(REPLICA_SET, "web", {"spec": {"replicas": 5}}, "default")
        await wait_pods(client, rs, 5)
        await client.patch(REPLICA_SET, "web", {"spec": {"replicas": 0}}, "default")
        await wait_pods(client, rs, 0)

        async def status_zero() -> bool:
            current = await client.get(REPLICA_SET, "web", "default")
            return current["status"] == {"replicas": 0, "observedGeneration": 3}

        await eventually(status_zero)


async def test_scale_down_deletes_not_ready_pods_first(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        rs = await client.create(REPLICA_SET, replica_set(replicas=4))
        pods = await wait_pods(client, rs, 4)
        keep = pods[:2]
        await kubelet.ready(keep)

        async def ready_counted() -> bool:
            current = await client.get(REPLICA_SET, "web", "default")
            return (current.get("status") or {}).get("readyReplicas") == 2

        await eventually(ready_counted)
        await client.patch(REPLICA_SET, "web", {"spec": {"replicas": 2}}, "default")
        left = await wait_pods(client, rs, 2)
        assert {p["metadata"]["name"] for p in left} == {p["metadata"]["name"] for p in keep}

        current = await client.get(REPLICA_SET, "web", "default")
        assert current["status"]["availableReplicas"] == 2


async def test_adopts_orphans_and_releases_pods_that_stop_matching(
    client: Client, informers: SharedInformerFactory
) -> None:
    orphan = await client.create(
        POD,
        {
            "metadata": {"name": "stray", "namespace": "default", "labels": LABELS},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
        },
    )
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        rs = await client.create(REPLICA_SET, replica_set(replicas=2))
        pods = await wait_pods(client, rs, 2)
        assert "stray" in {p["metadata"]["name"] for p in pods}
        adopted = await client.get(POD, "stray", "default")
        assert adopted["metadata"]["uid"] == orphan["metadata"]["uid"]
        assert adopted["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]

        # A pod whose labels no longer match is released, and replaced.
        await client.patch(POD, "stray", {"metadata": {"labels": {"app": "debug"}}}, "default")

        async def released() -> bool:
            pod = await client.get(POD, "stray", "default")
            return not pod["metadata"].get("ownerReferences")

        await eventually(released)
        pods = await wait_pods(client, rs, 2)
        assert "stray" not in {p["metadata"]["name"] for p in pods}


async def test_pods_of_another_controller_are_left_alone(
    client: Client, informers: SharedInformerFactory
) -> None:
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        other = await client.create(REPLICA_SET, replica_set(name="other", replicas=1))
        other_pods = await wait_pods(client, other, 1)
        rs = await client.create(REPLICA_SET, replica_set(replicas=2))
        pods = await wait_pods(client, rs, 2)
        assert not {p["metadata"]["name"] for p in pods} & {
            p["metadata"]["name"] for p in other_pods
        }


async def test_slow_start_batches_double_and_stop_at_the_first_failure() -> None:
    calls: list[int] = []
    budget = {"left": 6}

    async def create() -> None:
        calls.append(1)
        budget["left"] -= 1
        if budget["left"] < 0:
            raise RuntimeError("quota exceeded")

    created, error = await slow_start_batch(20, 1, create)
    # Batches of 1, 2, 4 (three fail in the last one), and nothing after it.
    assert len(calls) == 7
    assert created == 6
    assert isinstance(error, RuntimeError)

    calls.clear()
    budget["left"] = 100
    created, error = await slow_start_batch(10, 1, create)
    assert (created, error, len(calls)) == (10, None, 10)


async def test_available_only_after_min_ready_seconds(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    controller = ReplicaSetController(client, informers)
    async with running(informers, controller):
        rs = await client.create(REPLICA_SET, replica_set(replicas=1, minReadySeconds=1))
        pods = await wait_pods(client, rs, 1)
        await kubelet.ready(pods)

        async def counts() -> tuple[int, int] | None:
            status = (await client.get(REPLICA_SET, "web", "default")).get("status") or {}
            ready = status.get("readyReplicas", 0)
            return (ready, status.get("availableReplicas", 0)) if ready else None

        assert await eventually(counts) == (1, 0)

        async def available() -> bool:
            status = (await client.get(REPLICA_SET, "web", "default")).get("status") or {}
            return status.get("availableReplicas") == 1

        await eventually(available)


def test_a_failed_create_sets_the_replica_failure_condition_until_success() -> None:
    rs = replica_set(replicas=2)
    rs["metadata"]["generation"] = 1
    error = errors.Forbidden('pods "web-x" is forbidden: exceeded quota')
    status = calculate_status(rs, [], error)
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "ReplicaFailure",
        "True",
        "FailedCreate",
    )
    assert cond["message"] == 'pods "web-x" is forbidden: exceeded quota'
    assert status["replicas"] == 0 and status["observedGeneration"] == 1
    rs["status"] = status
    assert "conditions" not in calculate_status(rs, [], None)
