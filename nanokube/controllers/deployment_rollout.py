"""How a Deployment moves pods between ReplicaSets (upstream's rolling.go, recreate.go
and the proportional scaling of sync.go).

RollingUpdate, one step per reconcile:

1. grow the new ReplicaSet while the total of all ReplicaSets' `spec.replicas`
   stays within `replicas + maxSurge` (`new_rs_new_replicas`);
2. otherwise shrink old ReplicaSets, never below `replicas − maxUnavailable`
   available pods: first old ReplicaSets' unavailable pods (they cost no
   availability), then available ones, oldest ReplicaSet first;
3. once complete, delete ReplicaSets beyond the revision history limit.

Counting `spec.replicas` rather than pods is what keeps a step safe while the
ReplicaSets' statuses lag: a surge slot is spent when the new ReplicaSet is
resized, before its pod exists. For the same reason a ReplicaSet's available
pods count at most up to its `spec.replicas` (upstream counts its status as
is, which briefly includes the pods it is deleting, and can overshoot).

Recreate: scale every old ReplicaSet to zero, wait until none of their pods
is still running, then create (or scale up) the new ReplicaSet.

Scaling (a resize mid-rollout, or while paused): the only active ReplicaSet
takes the new size; with several, the difference is shared out in proportion
to their sizes (as recorded in their `max-replicas` annotations), largest
first, the rounding leftover going to the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanokube.controllers import deployment_status as ds
from nanokube.controllers import deployment_util as du

if TYPE_CHECKING:
    from nanokube.controllers.deployment import DeploymentController

Obj = dict[str, Any]


# -- RollingUpdate ------------------------------------------------------------------


async def rolling(dc: DeploymentController, d: Obj, rs_list: list[Obj]) -> None:
    new, old = await dc.all_replica_sets(d, rs_list, create=True)
    if new is None:
        return
    all_rss: list[Obj | None] = [*old, new]
    if await reconcile_new(dc, all_rss, new, d):
        await dc.sync_rollout_status(d, all_rss, new)
        return
    if await reconcile_old(dc, all_rss, du.active(list(old)), new, d):
        await dc.sync_rollout_status(d, all_rss, new)
        return
    if ds.complete(d, d.get("status") or {}):
        await dc.cleanup(old, d)
    await dc.sync_rollout_status(d, all_rss, new)


async def reconcile_new(
    dc: DeploymentController, all_rss: list[Obj | None], new: Obj, d: Obj
) -> bool:
    """Scale the new ReplicaSet towards `replicas`, within the surge allowance."""
    want = du.replicas(d)
    if du.replicas(new) == want:
        return False
    if du.replicas(new) > want:
        scaled, _ = await dc.scale_replica_set(new, want, d, "down")
        return scaled
    count = du.new_rs_new_replicas(d, [rs for rs in all_rss if rs is not None], new)
    scaled, _ = await dc.scale_replica_set(new, count, d, "up")
    return scaled


async def reconcile_old(
    dc: DeploymentController, all_rss: list[Obj | None], old: list[Obj], new: Obj, d: Obj
) -> bool:
    """Scale old ReplicaSets down as far as availability allows."""
    if du.total_replicas(list(old)) == 0:
        return False
    min_available = du.replicas(d) - du.max_unavailable(d)
    new_unavailable = du.replicas(new) - du.status_count(new, "availableReplicas")
    max_scaled_down = du.total_replicas(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    old, cleaned = await cleanup_unhealthy(dc, old, d, max_scaled_down)
    scaled = await scale_down_old(dc, [*old, new], old, d)
    return cleaned + scaled > 0


async def cleanup_unhealthy(
    dc: DeploymentController, old: list[Obj], d: Obj, max_cleanup: int
) -> tuple[list[Obj], int]:
    """Remove old ReplicaSets' unavailable pods first: losing them costs no availability."""
    old = sorted(old, key=du.created)
    total = 0
    for i, rs in enumerate(old):
        if total >= max_cleanup:
            break
        available = du.status_count(rs, "availableReplicas")
        if du.replicas(rs) == 0 or du.replicas(rs) == available:
            continue
        count = min(max_cleanup - total, du.replicas(rs) - available)
        if count <= 0:
            continue  # its status still counts pods it no longer wants
        _, old[i] = await dc.scale_replica_set(rs, du.replicas(rs) - count, d)
        total += count
    return old, total


async def scale_down_old(
    dc: DeploymentController, all_rss: list[Obj | None], old: list[Obj], d: Obj
) -> int:
    """Scale old ReplicaSets down by the available pods above the minimum, oldest first."""
    min_available = du.replicas(d) - du.max_unavailable(d)
    # A ReplicaSet just scaled down still counts the pods it is deleting until its
    # status catches up: never count more available pods than it wants.
    available = sum(
        min(du.status_count(rs, "availableReplicas"), du.replicas(rs))
        for rs in all_rss
        if rs is not None
    )
    if available <= min_available:
        return 0
    budget = available - min_available
    total = 0
    for rs in sorted(old, key=du.created):
        if total >= budget:
            break
        if du.replicas(rs) == 0:
            continue
        count = min(du.replicas(rs), budget - total)
        await dc.scale_replica_set(rs, du.replicas(rs) - count, d)
        total += count
    return total


# -- Recreate -----------------------------------------------------------------------


async def recreate(
    dc: DeploymentController, d: Obj, rs_list: list[Obj], pod_map: dict[str, list[Obj]]
) -> None:
    new, old = await dc.all_replica_sets(d, rs_list, create=False)
    all_rss: list[Obj | None] = [*old, new]
    scaled = False
    for rs in du.active(list(old)):
        resized, _ = await dc.scale_replica_set(rs, 0, d)
        scaled = scaled or resized
    if scaled or old_pods_running(new, old, pod_map):
        await dc.sync_rollout_status(d, all_rss, new)
        return
    if new is None:
        new, old = await dc.all_replica_sets(d, rs_list, create=True)
        all_rss = [*old, new]
    if new is not None:
        await dc.scale_replica_set(new, du.replicas(d), d)
    if ds.complete(d, d.get("status") or {}):
        await dc.cleanup(old, d)
    await dc.sync_rollout_status(d, all_rss, new)


def old_pods_running(new: Obj | None, old: list[Obj], pod_map: dict[str, list[Obj]]) -> bool:
    """Any old ReplicaSet still counts pods, or any of its pods has not finished."""
    if du.total_status(list(old), "replicas") > 0:
        return True
    new_uid = new["metadata"]["uid"] if new is not None else None
    for uid, pods in pod_map.items():
        if uid == new_uid:
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
    return False


# -- proportional scaling ----------------------------------------------------------


def _replace(new: Obj | None, old: list[Obj], updated: Obj) -> tuple[Obj | None, list[Obj]]:
    uid = updated["metadata"]["uid"]
    if new is not None and new["metadata"]["uid"] == uid:
        return updated, old
    return new, [updated if rs["metadata"]["uid"] == uid else rs for rs in old]


def _by_size(rss: list[Obj], newer_first: bool) -> list[Obj]:
    """Largest first; among equals, newer (scaling up) or older (scaling down) first."""
    return sorted(sorted(rss, key=du.created, reverse=newer_first), key=lambda rs: -du.replicas(rs))


async def scale(
    dc: DeploymentController, d: Obj, new: Obj | None, old: list[Obj]
) -> tuple[Obj | None, list[Obj]]:
    """`scale`: bring the ReplicaSets' total to the Deployment's size; returns them updated."""
    target = du.find_active_or_latest(new, old)
    if target is not None:
        if du.replicas(target) == du.replicas(d):
            return new, old
        _, updated = await dc.scale_replica_set(target, du.replicas(d), d)
        return _replace(new, old, updated)
    if du.is_saturated(d, new):
        for rs in du.active(list(old)):
            _, updated = await dc.scale_replica_set(rs, 0, d)
            new, old = _replace(new, old, updated)
        return new, old
    if not du.is_rolling(d):
        return new, old
    wanting = du.active([*old, new])
    allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
    to_add = allowed - du.total_replicas(list(wanting))
    operation = ""
    if to_add > 0:
        wanting, operation = _by_size(wanting, newer_first=True), "up"
    elif to_add < 0:
        wanting, operation = _by_size(wanting, newer_first=False), "down"
    added = 0
    sizes: dict[str, int] = {}
    for rs in wanting:
        share = du.proportion(rs, d, to_add, added) if to_add else 0
        sizes[rs["metadata"]["uid"]] = du.replicas(rs) + share
        added += share
    for i, rs in enumerate(wanting):
        uid = rs["metadata"]["uid"]
        if i == 0 and to_add:
            sizes[uid] = max(sizes[uid] + to_add - added, 0)
        _, updated = await dc.scale_replica_set(rs, sizes[uid], d, operation)
        new, old = _replace(new, old, updated)
    return new, old
