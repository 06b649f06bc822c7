"""Score plugins over a node: upstream's default scores and their weights.

Every plugin gives each feasible node a raw score, normalises the list to
0-100 where upstream does, and is weighted as in upstream's default profile:

| plugin | weight | prefers |
| --- | --- | --- |
| NodeResourcesFit (LeastAllocated) | 1 | free cpu and memory (non-zero requests) |
| NodeResourcesBalancedAllocation | 1 | cpu and memory used in equal proportion |
| NodeAffinity | 2 | nodes matching preferred node affinity terms (by weight) |
| TaintToleration | 3 | fewer untolerated PreferNoSchedule taints |
| PodTopologySpread | 2 | less crowded domains (`topology`) |
| InterPodAffinity | 2 | preferred pod (anti-)affinity (`interpod`) |

A plugin whose scores would be equal on every node is skipped (upstream's
PreScore "Skip"), which changes no ranking and saves a pass over the nodes.
"""

from __future__ import annotations

from nanokube.api.scheduling import tolerated
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

MAX_NODE_SCORE = 100

WEIGHT_FIT = 1
WEIGHT_BALANCED = 1
WEIGHT_NODE_AFFINITY = 2
WEIGHT_TAINT = 3
WEIGHT_SPREAD = 2
WEIGHT_INTERPOD = 2


def least_allocated(pi: PodInfo, ni: NodeInfo) -> int:
    """Mean over cpu and memory of free/allocatable after placing the pod (non-zero requests).

    A resource the node does not offer is left out of the mean.
    """
    acpu, amem = ni.alloc_cpu, ni.alloc_memory
    if acpu and amem:
        ucpu = ni.nz_cpu + pi.req.nonzero_cpu
        umem = ni.nz_memory + pi.req.nonzero_memory
        cpu = (acpu - ucpu) * MAX_NODE_SCORE // acpu if ucpu <= acpu else 0
        mem = (amem - umem) * MAX_NODE_SCORE // amem if umem <= amem else 0
        return (cpu + mem) // 2
    total = weights = 0
    for alloc, used in (
        (acpu, ni.nz_cpu + pi.req.nonzero_cpu),
        (amem, ni.nz_memory + pi.req.nonzero_memory),
    ):
        if alloc:
            weights += 1
            if used <= alloc:
                total += (alloc - used) * MAX_NODE_SCORE // alloc
    return total // weights if weights else 0


def balanced_allocation(pi: PodInfo, ni: NodeInfo) -> int:
    """100 × (1 − |cpu fraction − memory fraction| / 2), fractions of requests after placing the pod.

    A resource the node does not offer is left out; upstream skips the plugin for
    best-effort pods (nothing requested), where every node would score alike.
    """
    r = pi.req
    if not ni.alloc_cpu or not ni.alloc_memory:
        return MAX_NODE_SCORE
    cpu = min((ni.req_cpu + r.cpu) / ni.alloc_cpu, 1.0)
    mem = min((ni.req_memory + r.memory) / ni.alloc_memory, 1.0)
    return int((1 - abs(cpu - mem) / 2) * MAX_NODE_SCORE)


def resource_scores(pi: PodInfo, ni: NodeInfo) -> int:
    """LeastAllocated + BalancedAllocation (both weight 1), remembered per node.

    Both depend only on the node's allocatable and requested totals (which bump
    `NodeInfo.generation`) and on the pod's requests, and the pods of one
    workload ask alike: between two cycles only the node that took the last pod
    changes, so most nodes answer from their memo.
    """
    key = (ni.generation, pi.req)
    memo = ni.score_memo
    if memo is not None and memo[0] == key:
        return memo[1]
    r = pi.req
    value = least_allocated(pi, ni)
    if r.cpu or r.memory:
        value += balanced_allocation(pi, ni)
    ni.score_memo = (key, value)
    return value


def node_affinity(pi: PodInfo, ni: NodeInfo) -> int:
    """Summed weights of the preferred node affinity terms the node matches."""
    return sum(w for w, match in pi.preferred_node_affinity if match(ni.labels, ni.name))


def taint_toleration(pi: PodInfo, ni: NodeInfo) -> int:
    """Untolerated PreferNoSchedule taints (fewer is better: normalised in reverse)."""
    tolerations = [
        t for t in pi.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"
    ]
    return sum(
        1
        for taint in ni.taints
        if taint.get("effect") == "PreferNoSchedule" and not tolerated(tolerations, taint)
    )


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Upstream's `DefaultNormalizeScore`: scale so the highest is 100 (reversed: the lowest)."""
    hi = max(scores) if scores else 0
    if hi == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        s = MAX_NODE_SCORE * s // hi
        scores[i] = MAX_NODE_SCORE - s if reverse else s


def reverse_normalize(scores: list[int]) -> None:
    default_normalize(scores, reverse=True)
