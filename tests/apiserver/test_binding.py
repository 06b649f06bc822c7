"""`pods/binding` over HTTP, and priority resolution of a pod being created."""

from __future__ import annotations

from typing import Any

import pytest

from nanokube.api import errors
from nanokube.apiserver import binding, priority
from nanokube.apiserver.server import APIServer

PODS = "/api/v1/namespaces/default/pods"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
}


def _binding(node: str, **md: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web", **md},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


@pytest.fixture(autouse=True)
def _serve_binding(server: APIServer) -> None:
    binding.register(server.handler)


async def test_bind_sets_node_annotations_and_condition(client: Any) -> None:
    await client.post(PODS, POD)
    body = _binding("node-1", annotations={"scheduled-by": "test"})
    status, out = await client.post(f"{PODS}/web/binding", body)
    assert status == 201
    assert out["kind"] == "Status" and out["status"] == "Success"
    _, pod = await client.get(f"{PODS}/web")
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["metadata"]["annotations"]["scheduled-by"] == "test"
    cond = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond[0]["status"] == "True"


async def test_binding_an_assigned_pod_is_a_conflict(client: Any) -> None:
    await client.post(PODS, POD)
    await client.post(f"{PODS}/web/binding", _binding("node-1"))
    status, out = await client.post(f"{PODS}/web/binding", _binding("node-2"))
    assert status == 409
    assert out["reason"] == "Conflict"
    assert out["message"] == (
        'Operation cannot be fulfilled on pods/binding "web": pod web is already assigned to node "node-1"'
    )


async def test_binding_errors(client: Any) -> None:
    status, out = await client.post(
        f"{PODS}/nope/binding", {**_binding("n"), "metadata": {"name": "nope"}}
    )
    assert status == 404 and out["message"] == 'pods "nope" not found'
    await client.post(PODS, POD)
    status, out = await client.post(
        f"{PODS}/web/binding", {**_binding("n"), "metadata": {"name": "other"}}
    )
    assert status == 400
    status, out = await client.post(
        f"{PODS}/web/binding", {"metadata": {"name": "web"}, "target": {}}
    )
    assert status == 422 and "target.name: Required value" in out["message"]
    status, out = await client.post(f"{PODS}/web/binding", _binding("n", uid="wrong-uid"))
    assert status == 409 and "Precondition failed: UID in precondition: wrong-uid" in out["message"]


async def test_priority_from_the_class_the_default_or_zero(server: APIServer, client: Any) -> None:
    pc = "/apis/scheduling.k8s.io/v1/priorityclasses"
    await client.post(
        pc,
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "high"},
            "value": 1000,
        },
    )
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"priorityClassName": "high"}}
    await priority.resolve_priority(server.resources, pod)
    assert pod["spec"]["priority"] == 1000
    assert pod["spec"]["preemptionPolicy"] == "PreemptLowerPriority"

    plain: dict[str, Any] = {"metadata": {"name": "q"}, "spec": {}}
    await priority.resolve_priority(server.resources, plain)
    assert plain["spec"]["priority"] == 0 and "priorityClassName" not in plain["spec"]

    await client.post(
        pc,
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "standard"},
            "value": 10,
            "globalDefault": True,
            "preemptionPolicy": "Never",
        },
    )
    defaulted: dict[str, Any] = {"metadata": {"name": "r"}, "spec": {}}
    await priority.resolve_priority(server.resources, defaulted)
    assert defaulted["spec"] == {
        "priorityClassName": "standard",
        "priority": 10,
        "preemptionPolicy": "Never",
    }

    system: dict[str, Any] = {
        "metadata": {"name": "s"},
        "spec": {"priorityClassName": "system-node-critical"},
    }
    await priority.resolve_priority(server.resources, system)
    assert system["spec"]["priority"] == 2_000_001_000


async def test_priority_errors(server: APIServer) -> None:
    unknown: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"priorityClassName": "nope"}}
    with pytest.raises(errors.Forbidden) as e:
        await priority.resolve_priority(server.resources, unknown)
    assert e.value.message == 'pods "p" is forbidden: no PriorityClass with name nope was found'
    mismatch: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"priority": 5}}
    with pytest.raises(errors.Forbidden) as e:
        await priority.resolve_priority(server.resources, mismatch)
    assert "the integer value of priority (5) must not be provided in pod spec" in e.value.message
