"""Pod predicates (active, ready, available) and the order a ReplicaSet deletes pods in."""

from __future__ import annotations

import time
from typing import Any

from nanokube.api import meta
from nanokube.controllers import pods

Obj = dict[str, Any]


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def pod(
    name: str,
    node: str = "",
    phase: str = "Running",
    ready_for: float | None = None,
    age: float = 100,
    restarts: int = 0,
    cost: int | None = None,
) -> Obj:
    md: Obj = {"name": name, "creationTimestamp": stamp(age)}
    if cost is not None:
        md["annotations"] = {pods.DELETION_COST_ANNOTATION: str(cost)}
    status: Obj = {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}
    if ready_for is not None:
        status["conditions"] = [
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp(ready_for)}
        ]
    return {"metadata": md, "spec": {"nodeName": node}, "status": status}


def test_active_ready_available() -> None:
    assert pods.is_active(pod("a"))
    assert not pods.is_active(pod("a", phase="Succeeded"))
    deleting = pod("a")
    deleting["metadata"]["deletionTimestamp"] = meta.now_rfc3339()
    assert not pods.is_active(deleting)
    assert not pods.is_ready(pod("a"))
    ready = pod("a", ready_for=5)
    assert pods.is_ready(ready)
    assert pods.is_available(ready, 0) and pods.is_available(ready, 3)
    assert not pods.is_available(ready, 60)
    left = pods.available_in(ready, 60)
    assert left is not None and 50 < left <= 56


def test_deletion_order() -> None:
    candidates = [
        pod("ready-old", "n1", ready_for=100, age=200),
        pod("ready-new", "n1", ready_for=10, age=20),
        pod("not-ready", "n1"),
        pod("pending", "n1", phase="Pending"),
        pod("unscheduled", "", phase="Pending"),
        pod("restarting", "n1", ready_for=100, age=200, restarts=5),
        pod("expensive", "n1", ready_for=5, age=5, cost=100),
    ]
    order = [p["metadata"]["name"] for p in pods.pods_to_delete(candidates, candidates, 7)]
    assert order[:3] == ["unscheduled", "pending", "not-ready"]
    assert order[-1] == "expensive"
    assert order.index("ready-new") < order.index("restarting") < order.index("ready-old")


def test_crowded_nodes_lose_pods_first() -> None:
    a1, a2, b1 = (
        pod("a1", "a", ready_for=50),
        pod("a2", "a", ready_for=50),
        pod("b1", "b", ready_for=50),
    )
    chosen = pods.pods_to_delete([a1, b1], [a1, a2, b1], 1)
    assert [p["metadata"]["name"] for p in chosen] == ["a1"]
