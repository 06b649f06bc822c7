"""What controllers ask of a pod: is it active, ready, available, and which to delete first.

These are upstream's `pkg/api/v1/pod` helpers and `controller.ActivePodsWithRanks`,
written over plain dicts. A pod is *active* while it may still run (not
Succeeded or Failed, not being deleted), *ready* when its Ready condition is
True, and *available* once it has been ready for `minReadySeconds`.

When a ReplicaSet has too many pods it deletes the ones whose loss hurts least,
in upstream's order: unscheduled before scheduled, Pending before Unknown
before Running, not ready before ready, lower `controller.kubernetes.io/pod-deletion-cost`
first, pods sharing a node with more of their siblings first, ready for less
time before ready for longer, more container restarts before fewer, and newer
before older.
"""

from __future__ import annotations

import time
from typing import Any

from nanokube.api.meta import parse_time

Obj = dict[str, Any]

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

# upstream's podPhaseToOrdinal: a phase missing here sorts with Pending.
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def is_active(pod: Obj) -> bool:
    """`controller.IsPodActive`: may still run and is not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    deleting = (pod.get("metadata") or {}).get("deletionTimestamp")
    return phase not in ("Succeeded", "Failed") and not deleting


def ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(pod: Obj) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Obj) -> float:
    """When the pod last became ready (seconds since the epoch); 0 when unknown or not ready."""
    cond = ready_condition(pod)
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return 0.0
    return parse_time(cond["lastTransitionTime"])


def is_available(pod: Obj, min_ready_seconds: int, now: float | None = None) -> bool:
    """`podutil.IsPodAvailable`: ready, and for longer than `min_ready_seconds`."""
    if not is_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = ready_since(pod)
    return since > 0 and since + min_ready_seconds < (now if now is not None else time.time())


def available_in(pod: Obj, min_ready_seconds: int, now: float | None = None) -> float | None:
    """Seconds until a ready pod becomes available (None if not ready or already available)."""
    if not is_ready(pod) or not min_ready_seconds:
        return None
    left = ready_since(pod) + min_ready_seconds - (now if now is not None else time.time())
    return left if left >= 0 else None


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return max((s.get("restartCount") or 0 for s in statuses), default=0)


def _deletion_cost(pod: Obj) -> int:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _created(pod: Obj) -> float:
    stamp = (pod.get("metadata") or {}).get("creationTimestamp")
    return parse_time(stamp) if stamp else float("inf")  # an empty time sorts first


def deletion_order_key(pod: Obj, rank: int = 0) -> tuple[Any, ...]:
    """A sort key putting the pod to delete first at the front (see the module docstring).

    `rank` is the number of the controller's pods on the same node: of two otherwise
    equal pods, the one on the more crowded node goes first.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ready = is_ready(pod)
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_ORDER.get(status.get("phase", ""), 0),
        1 if ready else 0,
        _deletion_cost(pod),
        -rank,
        -ready_since(pod) if ready else 0.0,
        -_restarts(pod),
        -_created(pod),
    )


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int) -> list[Obj]:
    """The `count` pods of `pods` to delete first; `related` are all the owner's active pods.

    Upstream's `getPodsToDelete`: each pod is ranked by how many related pods share
    its node, then sorted by `deletion_order_key`.
    """
    per_node: dict[str, int] = {}
    for p in related:
        node = (p.get("spec") or {}).get("nodeName")
        if node:
            per_node[node] = per_node.get(node, 0) + 1

    def rank(p: Obj) -> int:
        node = (p.get("spec") or {}).get("nodeName")
        return per_node.get(node, 0) if node else 0

    return sorted(pods, key=lambda p: deletion_order_key(p, rank(p)))[:count]
