"""Preemption: when no node fits, find one where evicting lower-priority pods makes room.

Upstream's `defaultpreemption` plugin (PostFilter), simplified where noted:

1. The pod must be eligible: `preemptionPolicy: Never` never preempts, and a
   pod whose nominated node still has lower-priority pods terminating (its
   earlier victims) waits for them instead of preempting again.
2. Nodes whose failure was unresolvable (selector, taint, a request larger
   than the node) are skipped: "Preemption is not helpful for scheduling".
3. On every other node: take away all pods of lower priority; if the pod then
   fits, give back as many as possible, most important first (higher
   priority, then older), keeping only those whose return breaks the fit.
   Those left are the victims. ("No preemption victims found for incoming
   pod" when there is nothing of lower priority.)
4. Among candidate nodes pick the one whose most important victim has the
   lowest priority, then the lowest sum of victim priorities, then the
   fewest victims (PodDisruptionBudgets are not considered).

The simulation removes and re-adds pods on the real `NodeInfo` and always
restores it before returning; the cycle's topology-spread and inter-pod
affinity counts are not recomputed for the removed pods (upstream updates
them), so victims are chosen for resources, ports and the node-local rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nanokube.scheduler.filters import Filter, Status
from nanokube.scheduler.framework import Algorithm, CycleState, fit_message
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

NOT_HELPFUL = Status(("Preemption is not helpful for scheduling",), True)
NO_VICTIMS = Status(("No preemption victims found for incoming pod",), True)
NOT_ELIGIBLE_POLICY = "not eligible due to preemptionPolicy=Never."
NOT_ELIGIBLE_TERMINATING = "not eligible due to a terminating pod on the nominated node."
_PRIORITY_OFFSET = 2**31  # upstream adds MaxInt32+1 so that negative priorities sum sensibly


@dataclass
class Candidate:
    node: NodeInfo
    victims: list[PodInfo]


@dataclass
class Result:
    """A node and its victims, or the message that says why preemption cannot help."""

    candidate: Candidate | None = None
    message: str = ""
    statuses: dict[str, Status] = field(default_factory=dict)


def _more_important_first(p: PodInfo) -> tuple[int, str]:
    return (-p.priority, p.created)


def eligible(algorithm: Algorithm, pi: PodInfo, statuses: dict[str, Status]) -> str:
    """ "" if the pod may preempt, else upstream's reason."""
    if pi.preemption_policy == "Never":
        return NOT_ELIGIBLE_POLICY
    if pi.nominated_node:
        st = statuses.get(pi.nominated_node)
        if st is not None and st.unresolvable:
            return ""
        ni = algorithm.cache.nodes.get(pi.nominated_node)
        if ni is not None and any(
            p.deleting and p.priority < pi.priority for p in ni.pods.values()
        ):
            return NOT_ELIGIBLE_TERMINATING
    return ""


def select_victims(
    algorithm: Algorithm, pi: PodInfo, ni: NodeInfo, state: CycleState, chain: list[Filter]
) -> tuple[list[PodInfo], Status | None]:
    """The fewest lower-priority pods whose removal lets `pi` fit on `ni` (see module doc)."""
    lower = sorted(
        (p for p in ni.pods.values() if p.priority < pi.priority), key=_more_important_first
    )
    if not lower:
        return [], NO_VICTIMS
    for p in lower:
        ni.remove_pod(p)
    failure = algorithm.run_filters(state, pi, ni, chain)
    if failure is not None:
        for p in lower:
            ni.add_pod(p)
        return [], failure
    victims: list[PodInfo] = []
    for p in lower:
        ni.add_pod(p)
        if algorithm.run_filters(state, pi, ni, chain) is not None:
            ni.remove_pod(p)
            victims.append(p)
    for p in victims:
        ni.add_pod(p)
    return victims, None


def _rank(c: Candidate) -> tuple[int, int, int]:
    return (
        max(v.priority for v in c.victims),
        sum(v.priority + _PRIORITY_OFFSET for v in c.victims),
        len(c.victims),
    )


def preempt(algorithm: Algorithm, pi: PodInfo, statuses: dict[str, Status]) -> Result:
    """Find the node and victims for `pi`, given the filter statuses of its failed cycle."""
    reason = eligible(algorithm, pi, statuses)
    if reason:
        return Result(message=reason)
    nodes = algorithm.cache.node_list()
    state, chain = algorithm.prefilter(pi, nodes)
    verdicts: dict[str, Status] = {}
    candidates: list[Candidate] = []
    for ni in nodes:
        st = statuses.get(ni.name)
        if st is not None and st.unresolvable:
            verdicts[ni.name] = NOT_HELPFUL
            continue
        victims, failure = select_victims(algorithm, pi, ni, state, chain)
        if failure is not None:
            verdicts[ni.name] = failure
        else:
            candidates.append(Candidate(ni, victims))
    if not candidates:
        return Result(message=fit_message(len(nodes), verdicts), statuses=verdicts)
    return Result(candidate=min(candidates, key=_rank))
