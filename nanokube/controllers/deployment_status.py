"""A Deployment's status and its Available and Progressing conditions (upstream's
`deployment/sync.go` calculateStatus and `deployment/progress.go`).

Counts come from the ReplicaSets' own statuses: `replicas`, `readyReplicas` and
`availableReplicas` summed over all of them, `updatedReplicas` from the new one,
`unavailableReplicas` = wanted (sum of `spec.replicas`) − available.

Available is True once at least `spec.replicas − maxUnavailable` pods are
available (MinimumReplicasAvailable), else False (MinimumReplicasUnavailable).
Progressing, while a `progressDeadlineSeconds` is set: True NewReplicaSetCreated
or FoundNewReplicaSet when the new ReplicaSet appears, True ReplicaSetUpdated
while any count moves forwards, True NewReplicaSetAvailable once complete, and
False ProgressDeadlineExceeded when nothing moved for the deadline (measured
from the condition's `lastUpdateTime`, which each forward move refreshes).
Unknown DeploymentPaused / DeploymentResumed mark pauses, so the pause does
not count against the deadline.
"""

from __future__ import annotations

import time
from typing import Any

from nanokube.api import meta
from nanokube.api.meta import parse_time
from nanokube.api.patch_json import copy_json
from nanokube.controllers import deployment_util as du
from nanokube.controllers.status import (
    get_condition,
    new_condition,
    remove_condition,
    set_condition,
)

Obj = dict[str, Any]

# Reasons of the Progressing and Available conditions, as upstream names them.
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "ReplicaSetCreateError"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_MAX_INT32 = 2**31 - 1


def has_progress_deadline(deployment: Obj) -> bool:
    deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and deadline != _MAX_INT32


def calculate_status(all_rss: list[Obj | None], new: Obj | None, deployment: Obj) -> Obj:
    """The counts and the Available condition; other conditions are carried over."""
    old = deployment.get("status") or {}
    available = du.total_status(all_rss, "availableReplicas")
    unavailable = max(du.total_replicas(all_rss) - available, 0)
    status: Obj = {}
    for field, value in (
        ("observedGeneration", deployment["metadata"].get("generation", 0)),
        ("replicas", du.total_status(all_rss, "replicas")),
        ("updatedReplicas", du.total_status([new], "replicas")),
        ("readyReplicas", du.total_status(all_rss, "readyReplicas")),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ):
        if value:  # zero counts are omitted, as the Go types' omitempty does
            status[field] = value
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    conditions = copy_json(list(old.get("conditions") or ()))
    if available >= du.replicas(deployment) - du.max_unavailable(deployment):
        cond = new_condition(
            "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability."
        )
    else:
        cond = new_condition(
            "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability."
        )
    set_condition(conditions, cond)
    if conditions:
        status["conditions"] = conditions
    return status


def complete(deployment: Obj, status: Obj) -> bool:
    """`DeploymentComplete`: every wanted pod updated and available, for this generation."""
    want = du.replicas(deployment)
    return (
        status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    )


def progressing(deployment: Obj, status: Obj) -> bool:
    """`DeploymentProgressing`: some count moved forwards since the stored status."""
    old = deployment.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return (
        status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or new_old < old_old
        or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or status.get("availableReplicas", 0) > old.get("availableReplicas", 0)
    )


def timed_out(deployment: Obj, status: Obj, now: float | None = None) -> bool:
    """`DeploymentTimedOut`: no progress for `progressDeadlineSeconds`."""
    if not has_progress_deadline(deployment):
        return False
    cond = get_condition(status.get("conditions") or [], "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    deadline = deployment["spec"]["progressDeadlineSeconds"]
    since = parse_time(cond.get("lastUpdateTime") or cond["lastTransitionTime"])
    return since + deadline < (now if now is not None else time.time())


def rollout_status(all_rss: list[Obj | None], new: Obj | None, deployment: Obj) -> Obj:
    """`syncRolloutStatus`'s new status: counts, Available, Progressing, ReplicaFailure."""
    status = calculate_status(all_rss, new, deployment)
    conditions: list[Obj] = status.get("conditions", [])
    if not has_progress_deadline(deployment):
        conditions = remove_condition(conditions, "Progressing")
    current = get_condition((deployment.get("status") or {}).get("conditions") or [], "Progressing")
    already_complete = (
        status.get("replicas", 0) == status.get("updatedReplicas", 0)
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    name = deployment["metadata"]["name"]
    if has_progress_deadline(deployment) and not already_complete:
        subject = f'ReplicaSet "{meta.name(new)}"' if new is not None else f'Deployment "{name}"'
        if complete(deployment, status):
            set_condition(
                conditions,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    f"{subject} has successfully progressed.",
                ),
            )
        elif progressing(deployment, status):
            cond = new_condition("Progressing", "True", RS_UPDATED, f"{subject} is progressing.")
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                conditions = remove_condition(conditions, "Progressing")
            set_condition(conditions, cond)
        elif timed_out(deployment, {**status, "conditions": conditions}):
            set_condition(
                conditions,
                new_condition(
                    "Progressing", "False", TIMED_OUT, f"{subject} has timed out progressing."
                ),
            )
    failures = replica_failures(all_rss, new)
    if failures:
        set_condition(conditions, failures[0])
    else:
        conditions = remove_condition(conditions, "ReplicaFailure")
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)
    return status


def replica_failures(all_rss: list[Obj | None], new: Obj | None) -> list[Obj]:
    """ReplicaFailure conditions of the ReplicaSets (the new one's first), as Deployment ones."""
    ordered = ([new] if new is not None else []) + [
        rs for rs in all_rss if rs is not None and rs is not new
    ]
    found = []
    for rs in ordered:
        for cond in (rs.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                stamp = cond.get("lastTransitionTime")
                found.append(
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "lastUpdateTime": stamp,
                        "lastTransitionTime": stamp,
                        "reason": cond.get("reason", ""),
                        "message": cond.get("message", ""),
                    }
                )
    return found


def requeue_after(deployment: Obj, status: Obj, now: float | None = None) -> float | None:
    """`requeueStuckDeployment`: when to check the deadline again, or None (no need)."""
    current = get_condition((deployment.get("status") or {}).get("conditions") or [], "Progressing")
    if not has_progress_deadline(deployment) or current is None:
        return None
    if complete(deployment, status) or current.get("reason") == TIMED_OUT:
        return None
    since = parse_time(current.get("lastUpdateTime") or current["lastTransitionTime"])
    after = since + deployment["spec"]["progressDeadlineSeconds"] - (now or time.time())
    return max(after, 1.0)
