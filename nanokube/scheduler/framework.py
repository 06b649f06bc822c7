"""One scheduling cycle: filter the nodes, score the feasible ones, pick the best.

Upstream's `schedule_one.go` (`schedulePod`, `findNodesThatFitPod`,
`prioritizeNodes`, `selectHost`) over the plugins of `filters`, `scores`,
`topology` and `interpod`:

1. A pod nominated to a node by an earlier preemption tries that node first.
2. Filters run node by node, in upstream's order, stopping at the first
   failure; the failure's reasons are kept per node for the error message.
   In a big cluster the search stops once enough feasible nodes are found
   (upstream's adaptive `percentageOfNodesToScore`: 50% of nodes at 100
   nodes, one point less per 125 nodes, at least 5% and at least 100 nodes),
   and the next cycle starts where this one stopped, so that every node gets
   its turn.
3. Scores are summed with their weights; the best node wins, ties broken at
   random (so equal nodes share the load).

When no node fits, `FitError` carries the per-node statuses and renders
upstream's message: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s)
didn't match Pod's node affinity/selector." (reasons counted and sorted).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from nanokube.scheduler import filters, interpod, scores, topology
from nanokube.scheduler.cache import Cache, NominatedTotals
from nanokube.scheduler.filters import Filter, Status
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

_NODE_CONDITION_FILTERS = (filters.node_unschedulable, filters.taint_toleration)
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
DEFAULT_PERCENTAGE = 50  # at 0 nodes; one point less per 125 nodes (adaptive)
NO_NODES = "no nodes available to schedule pods"


@dataclass
class CycleState:
    """What the cycle's filters pre-computed for this pod."""

    nominated: dict[str, NominatedTotals] = field(default_factory=dict)
    spread: topology.SpreadFilterState | None = None
    affinity: interpod.AffinityFilterState | None = None


class FitError(Exception):
    """No node fits: the per-node reasons, rendered as upstream's message."""

    def __init__(self, pi: PodInfo, num_all_nodes: int, statuses: dict[str, Status]) -> None:
        self.pod = pi
        self.num_all_nodes = num_all_nodes
        self.statuses = statuses
        super().__init__(self.message())

    def message(self, post_filter: str = "") -> str:
        """`0/N nodes are available: <count> <reason>, ....` plus the preemption verdict."""
        return fit_message(self.num_all_nodes, self.statuses, post_filter)


def fit_message(num_all_nodes: int, statuses: dict[str, Status], post_filter: str = "") -> str:
    if num_all_nodes == 0:
        return NO_NODES
    histogram: dict[str, int] = {}
    for st in statuses.values():
        for reason in st.reasons:
            histogram[reason] = histogram.get(reason, 0) + 1
    msg = f"0/{num_all_nodes} nodes are available:"
    reasons = sorted(f"{n} {reason}" for reason, n in histogram.items())
    if reasons:
        msg += f" {', '.join(reasons)}."
    if post_filter:
        msg += f" {post_filter}"
    return msg


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes a cycle looks for before it stops filtering."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_nodes
    if percentage <= 0:
        percentage = max(DEFAULT_PERCENTAGE - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    if percentage >= 100:
        return num_nodes
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Algorithm:
    """Filters and scores over the cache; one `schedule(pod)` call is one cycle (never awaits)."""

    def __init__(
        self, cache: Cache, percentage_of_nodes_to_score: int = 0, seed: int | None = None
    ) -> None:
        self.cache = cache
        self.percentage = percentage_of_nodes_to_score
        self.rng = random.Random(seed)
        self.next_start = 0  # where the next cycle's search begins (round robin)

    # -- filtering -------------------------------------------------------------

    def prefilter(self, pi: PodInfo, nodes: list[NodeInfo]) -> tuple[CycleState, list[Filter]]:
        """The cycle state and the filters that apply to this pod, in upstream's order."""
        cache = self.cache
        state = CycleState(nominated=cache.nominated_reservations(pi) if cache.nominated else {})
        chain: list[Filter] = [filters.node_unschedulable]
        if pi.node_name:
            chain.append(filters.node_name)
        chain.append(filters.taint_toleration)
        if pi.required_node_affinity is not None:
            chain.append(filters.node_affinity)
        if pi.ports:
            chain.append(filters.node_ports)
        chain.append(filters.node_resources_fit)
        spread = topology.prefilter(pi, nodes)
        if spread is not None:
            state.spread = spread
            chain.append(lambda s, p, n: topology.filter_spread(spread, p, n))
        affinity = interpod.prefilter(
            pi, nodes, cache.anti_affinity_nodes.values(), cache.namespace_labels
        )
        if affinity is not None:
            state.affinity = affinity
            chain.append(lambda s, p, n: interpod.filter_affinity(affinity, p, n))
        return state, chain

    @staticmethod
    def run_filters(
        state: CycleState, pi: PodInfo, ni: NodeInfo, chain: list[Filter]
    ) -> Status | None:
        for f in chain:
            st = f(state, pi, ni)
            if st is not None:
                return st
        return None

    def find_feasible(
        self, pi: PodInfo, nodes: list[NodeInfo], state: CycleState, chain: list[Filter]
    ) -> tuple[list[NodeInfo], dict[str, Status]]:
        n = len(nodes)
        to_find = num_feasible_nodes_to_find(n, self.percentage)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self.next_start % n if n else 0
        # Nodes without taints and not cordoned pass those two filters whatever the pod.
        plain_chain = [f for f in chain if f not in _NODE_CONDITION_FILTERS]
        only = plain_chain[0] if len(plain_chain) == 1 else None
        processed = 0
        for ni in itertools.chain(nodes[start:], nodes[:start]) if start else nodes:
            processed += 1
            if only is not None and ni.plain:  # the common case: one call, no inner loop
                st = only(state, pi, ni)
                if st is not None:
                    statuses[ni.name] = st
                    continue
                feasible.append(ni)
                if len(feasible) >= to_find:
                    break
                continue
            for f in plain_chain if ni.plain else chain:
                st = f(state, pi, ni)
                if st is not None:
                    statuses[ni.name] = st
                    break
            else:
                feasible.append(ni)
                if len(feasible) >= to_find:
                    break
        if n:
            self.next_start = (start + processed) % n
        return feasible, statuses

    # -- scoring ---------------------------------------------------------------

    @staticmethod
    def _add(
        totals: list[int],
        raw: list[int],
        normalize: Callable[[list[int]], None] | None,
        weight: int,
    ) -> None:
        if normalize is not None:
            normalize(raw)
        totals[:] = [t + s * weight for t, s in zip(totals, raw, strict=True)]

    def prioritize(self, pi: PodInfo, feasible: list[NodeInfo], nodes: list[NodeInfo]) -> list[int]:
        """The weighted score of every feasible node (same order)."""
        resource_scores = scores.resource_scores
        totals = [resource_scores(pi, ni) for ni in feasible]
        if pi.preferred_node_affinity:
            raw = [scores.node_affinity(pi, ni) for ni in feasible]
            self._add(totals, raw, scores.default_normalize, scores.WEIGHT_NODE_AFFINITY)
        if self.cache.prefer_no_schedule_nodes:
            raw = [scores.taint_toleration(pi, ni) for ni in feasible]
            self._add(totals, raw, scores.reverse_normalize, scores.WEIGHT_TAINT)
        spread = topology.prescore(pi, feasible, nodes, self.cache)
        if spread is not None:
            raw = [spread(ni) for ni in feasible]
            self._add(totals, raw, topology.normalize, scores.WEIGHT_SPREAD)
        affinity = interpod.prescore(
            pi, nodes, self.cache.affinity_nodes.values(), self.cache.namespace_labels
        )
        if affinity is not None:
            raw = [interpod.score(affinity, pi, ni) for ni in feasible]
            self._add(totals, raw, interpod.normalize, scores.WEIGHT_INTERPOD)
        return totals

    def select(self, feasible: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """The highest score; among equals, each has the same chance."""
        best = max(totals)
        ties = [i for i, t in enumerate(totals) if t == best]
        return feasible[ties[0] if len(ties) == 1 else self.rng.choice(ties)]

    # -- the cycle ---------------------------------------------------------------

    def schedule(self, pi: PodInfo) -> str:
        """The node for `pi`, or `FitError`."""
        nodes = self.cache.node_list()
        if not nodes:
            raise FitError(pi, 0, {})
        state, chain = self.prefilter(pi, nodes)
        nominated = self.cache.nodes.get(pi.nominated_node) if pi.nominated_node else None
        if nominated is not None and nominated.node is not None:
            if self.run_filters(state, pi, nominated, chain) is None:
                return nominated.name
        feasible, statuses = self.find_feasible(pi, nodes, state, chain)
        if not feasible:
            raise FitError(pi, len(nodes), statuses)
        if len(feasible) == 1:
            return feasible[0].name
        return self.select(feasible, self.prioritize(pi, feasible, nodes)).name
