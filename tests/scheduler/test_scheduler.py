"""End to end against a real API server: binding, spreading, FailedScheduling, preemption."""

from __future__ import annotations

from typing import Any

from sched_helpers import EVENT, NODE, POD, PRIORITY_CLASS, eventually, make_node, make_pod, running

from nanokube.client.http import HTTPClient
from nanokube.client.inprocess import InProcessClient
from nanokube.scheduler import Scheduler

Obj = dict[str, Any]


async def _pods(client: InProcessClient) -> list[Obj]:
    return (await client.list(POD, "default"))["items"]


async def test_pods_are_bound_and_spread(client: InProcessClient) -> None:
    for i in range(3):
        await client.create(NODE, make_node(f"node-{i}"))
    async with running(Scheduler(client, seed=1)):
        for i in range(6):
            await client.create(POD, make_pod(f"web-{i}", cpu="100m", memory="64Mi", owner="web"))

        async def all_bound() -> list[Obj] | None:
            pods = await _pods(client)
            return pods if all(p["spec"].get("nodeName") for p in pods) else None

        pods = await eventually(all_bound)
    per_node: dict[str, int] = {}
    for p in pods:
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        cond = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert cond and cond[0]["status"] == "True"
    assert per_node == {"node-0": 2, "node-1": 2, "node-2": 2}
    events = (await client.list(EVENT, "default"))["items"]
    messages = {e["message"] for e in events if e["reason"] == "Scheduled"}
    assert f"Successfully assigned default/web-0 to {pods[0]['spec']['nodeName']}" in messages


async def test_oversized_pod_stays_pending_with_the_upstream_message(
    client: InProcessClient,
) -> None:
    await client.create(NODE, make_node("small", cpu="1"))
    await client.create(NODE, make_node("gpu-0", labels={"gpu": "yes"}))
    await client.create(NODE, make_node("gpu-1", labels={"gpu": "yes"}))
    expected = (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not "
        "helpful for scheduling."
    )
    async with running(Scheduler(client)):
        await client.create(POD, make_pod("big", cpu="2"))
        await client.create(
            POD,
            make_pod(
                "huge",
                cpu="5",
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}
                            ]
                        }
                    }
                },
            ),
        )

        async def condition() -> Obj | None:
            pod = await client.get(POD, "huge", "default")
            conds = [
                c
                for c in (pod.get("status") or {}).get("conditions") or ()
                if c["type"] == "PodScheduled"
            ]
            return conds[0] if conds else None

        cond = await eventually(condition)
        events = await eventually(lambda: _events_for(client, "huge", "FailedScheduling"))
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == expected
    assert events[0]["type"] == "Warning"
    assert events[0]["message"] == expected
    assert (await client.get(POD, "huge", "default"))["spec"].get("nodeName") is None
    assert (await client.get(POD, "big", "default"))["spec"]["nodeName"].startswith("gpu-")


async def _events_for(client: InProcessClient, name: str, reason: str) -> list[Obj]:
    items = (await client.list(EVENT, "default"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


async def test_preemption_evicts_a_lower_priority_pod(client: InProcessClient) -> None:
    await client.create(NODE, make_node("only", cpu="2"))
    await client.create(PRIORITY_CLASS, {"metadata": {"name": "high"}, "value": 1000})
    async with running(Scheduler(client)):
        await client.create(POD, make_pod("low", cpu="1500m"))
        await eventually(lambda: _node_of(client, "low"))
        high = make_pod("high", cpu="1500m", priorityClassName="high", priority=1000)
        await client.create(POD, high)

        async def victim_marked() -> bool:
            low = await client.get(POD, "low", "default")
            return bool(low["metadata"].get("deletionTimestamp"))

        await eventually(victim_marked)
        nominated = await eventually(lambda: _status_field(client, "high", "nominatedNodeName"))
        assert nominated == "only"
        # The kubelet's part: the victim's containers stopped, the pod goes.
        await client.delete(POD, "low", "default", grace_period_seconds=0)
        assert await eventually(lambda: _node_of(client, "high")) == "only"
        preempted = await eventually(lambda: _events_for(client, "low", "Preempted"))
    assert preempted[0]["message"] == "Preempted by pod default/high on node only"


async def _node_of(client: InProcessClient, name: str) -> str | None:
    pod = await client.get(POD, name, "default")
    return pod["spec"].get("nodeName")


async def _status_field(client: InProcessClient, name: str, field: str) -> Any:
    pod = await client.get(POD, name, "default")
    return (pod.get("status") or {}).get(field)


async def test_over_http_as_a_separate_process_would(server: Any, client: InProcessClient) -> None:
    http = HTTPClient(f"http://127.0.0.1:{server.config.port}")
    try:
        await client.create(NODE, make_node("a"))
        await client.create(NODE, make_node("b", ready="False"))
        async with running(Scheduler(http)):
            for i in range(3):
                await client.create(POD, make_pod(f"p{i}", cpu="100m"))

            async def all_bound() -> list[Obj] | None:
                pods = await _pods(client)
                return pods if all(p["spec"].get("nodeName") for p in pods) else None

            pods = await eventually(all_bound)
    finally:
        await http.close()
    assert {p["spec"]["nodeName"] for p in pods} == {"a"}  # never the NotReady node
