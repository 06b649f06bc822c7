"""Pod topology spread: the filter (`DoNotSchedule`) and the score (`ScheduleAnyway`).

Upstream's `podtopologyspread` plugin. A constraint counts the pods its label
selector matches (in the pod's namespace, not being deleted) per topology
domain: the value of `topologyKey` on their node. Only nodes that pass the
pod's node selector/affinity count as domains (`nodeAffinityPolicy: Honor`,
the default) and a node without the key has no domain.

- Filter: placing the pod in a domain must not make its count exceed the
  smallest domain's count by more than `maxSkew` (the smallest counts as 0
  while there are fewer domains than `minDomains`).
- Score: fewer matching pods in the node's domains is better; each
  constraint's count is weighted by log(number of domains + 2), then scores
  are inverted and scaled to 0-100.

A pod without constraints of its own gets upstream's system defaults: spread
over hostnames (maxSkew 3) and zones (maxSkew 5), `ScheduleAnyway`. Upstream
selects "the same workload" by the selectors of the Services, ReplicaSets and
StatefulSets owning the pod; here it is the pods with the same controller
owner (`ownerReferences[controller=true]`), which the cache counts per node,
so the default spreading costs a dict lookup per node.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nanokube.api import selectors
from nanokube.api.errors import StatusError
from nanokube.scheduler.filters import Status
from nanokube.scheduler.nodeinfo import HOSTNAME_LABEL, NodeInfo, PodInfo

if TYPE_CHECKING:
    from nanokube.scheduler.cache import Cache

MAX_NODE_SCORE = 100
ERR_CONSTRAINTS = Status(("node(s) didn't match pod topology spread constraints",))
ERR_MISSING_LABEL = Status(
    ("node(s) didn't match pod topology spread constraints (missing required label)",), True
)


@dataclass
class Constraint:
    key: str
    max_skew: int
    min_domains: int
    count: Callable[[NodeInfo], int]  # matching pods on one node
    self_match: bool  # whether the pod itself matches the selector


def _selector_counter(obj: dict, pi: PodInfo) -> tuple[Callable[[NodeInfo], int], bool]:
    try:
        sel = selectors.label_selector_from_object(obj.get("labelSelector"))
    except StatusError:
        sel = selectors.NOTHING
    extra = [
        selectors.Requirement(k, selectors.IN, (pi.labels[k],))
        for k in obj.get("matchLabelKeys") or ()
        if k in pi.labels
    ]
    if extra:
        sel = selectors.LabelSelector((*sel.requirements, *extra), sel.nothing)
    ns = pi.namespace
    match = sel.matches

    def count(ni: NodeInfo) -> int:
        return sum(
            1 for p in ni.pods.values() if p.namespace == ns and not p.deleting and match(p.labels)
        )

    return count, match(pi.labels)


def constraints(pi: PodInfo, when: str) -> list[Constraint]:
    out = []
    for c in pi.spread_constraints:
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != when:
            continue
        count, self_match = _selector_counter(c, pi)
        out.append(
            Constraint(
                c.get("topologyKey") or "",
                int(c.get("maxSkew") or 1),
                int(c.get("minDomains") or 1),
                count,
                self_match,
            )
        )
    return out


@dataclass
class SpreadFilterState:
    constraints: list[Constraint]
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    min_match: list[int] = field(default_factory=list)


def prefilter(pi: PodInfo, nodes: list[NodeInfo]) -> SpreadFilterState | None:
    cons = constraints(pi, "DoNotSchedule")
    if not cons:
        return None
    state = SpreadFilterState(cons)
    counts = state.counts
    for ni in nodes:
        labels = ni.labels
        if not all(c.key in labels for c in cons) or not pi.matches_node_selector(labels, ni.name):
            continue
        for c in cons:
            pair = (c.key, labels[c.key])
            counts[pair] = counts.get(pair, 0) + c.count(ni)
    for c in cons:
        domains = [n for (k, _), n in counts.items() if k == c.key]
        if len(domains) < c.min_domains or not domains:
            state.min_match.append(0)
        else:
            state.min_match.append(min(domains))
    return state


def filter_spread(state: SpreadFilterState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    labels = ni.labels
    for i, c in enumerate(state.constraints):
        value = labels.get(c.key)
        if value is None:
            return ERR_MISSING_LABEL
        skew = state.counts.get((c.key, value), 0) + c.self_match - state.min_match[i]
        if skew > c.max_skew:
            return ERR_CONSTRAINTS
    return None


Scorer = Callable[[NodeInfo], int]
_HAS_HOSTNAME = operator.attrgetter("has_hostname")
_ZONE = operator.attrgetter("zone")


def _weight(feasible: list[NodeInfo], key: str) -> float:
    """log(number of domains + 2): hostnames count nodes, other keys distinct values."""
    if key == HOSTNAME_LABEL:
        return math.log(sum(1 for ni in feasible if key in ni.labels) + 2)
    return math.log(len({ni.labels[key] for ni in feasible if key in ni.labels}) + 2)


def _default_scorer(pi: PodInfo, feasible: list[NodeInfo], cache: Cache) -> Scorer:
    """The system defaults over the owner's per-node counts: a dict lookup per node."""
    per_node = cache.owner_counts.get(pi.owner_uid) or {}
    # Domains among the feasible nodes, counted at C speed (this runs every cycle).
    host_weight = math.log(sum(map(_HAS_HOSTNAME, feasible)) + 2)
    zone_set = set(map(_ZONE, feasible))
    zone_set.discard(None)
    zone_weight = math.log(len(zone_set) + 2)
    zones: dict[str, int] = {}
    for name, n in per_node.items():
        ni = cache.nodes.get(name)
        if ni is None or ni.node is None or ni.zone is None:
            continue
        if pi.matches_node_selector(ni.labels, ni.name):
            zones[ni.zone] = zones.get(ni.zone, 0) + n
    host_skew, zone_skew = 3 - 1, 5 - 1  # maxSkew - 1 of the two default constraints
    # Each zone's share of the raw score (count × weight + maxSkew − 1).
    zone_part = {zone: n * zone_weight + zone_skew for zone, n in zones.items()}
    # The whole raw score of a node holding none of the owner's pods, by zone.
    empty = {zone: int(zone_part.get(zone, zone_skew) + host_skew + 0.5) for zone in zone_set}  # type: ignore[misc]

    def score(ni: NodeInfo) -> int:
        n = per_node.get(ni.name)
        zone = ni.zone
        if not n and ni.has_hostname and zone is not None:
            return empty[zone]
        total = 0.0
        if ni.has_hostname:
            total = n * host_weight + host_skew if n else host_skew
        if zone is not None:
            total += zone_part.get(zone, zone_skew)
        return int(total + 0.5)  # Go's math.Round (half away from zero), not banker's

    return score


def _constraints_scorer(
    pi: PodInfo, cons: list[Constraint], feasible: list[NodeInfo], all_nodes: list[NodeInfo]
) -> Scorer:
    weights = [_weight(feasible, c.key) for c in cons]
    wanted = {
        (c.key, ni.labels[c.key])
        for c in cons
        if c.key != HOSTNAME_LABEL
        for ni in feasible
        if c.key in ni.labels
    }
    pair_counts: dict[tuple[str, str], int] = {}
    if wanted:
        for ni in all_nodes:
            labels = ni.labels
            if not all(c.key in labels for c in cons):
                continue
            if not pi.matches_node_selector(labels, ni.name):
                continue
            for c in cons:
                pair = (c.key, labels[c.key])
                if c.key != HOSTNAME_LABEL and pair in wanted:
                    pair_counts[pair] = pair_counts.get(pair, 0) + c.count(ni)

    def score(ni: NodeInfo) -> int:
        labels = ni.labels
        if not all(c.key in labels for c in cons):
            return -1  # ignored: lacks a topology key the pod's own constraints need
        total = 0.0
        for c, weight in zip(cons, weights, strict=True):
            value = labels[c.key]
            cnt = c.count(ni) if c.key == HOSTNAME_LABEL else pair_counts.get((c.key, value), 0)
            total += cnt * weight + (c.max_skew - 1)
        return int(total + 0.5)  # Go's math.Round (half away from zero), not banker's

    return score


def prescore(
    pi: PodInfo, feasible: list[NodeInfo], all_nodes: list[NodeInfo], cache: Cache
) -> Scorer | None:
    """The raw scorer (lower is better, -1: ignored node), or None: nothing to score.

    The pod's own `ScheduleAnyway` constraints need every topology key on a
    node; the system defaults count whichever keys a node has.
    """
    if pi.spread_constraints:
        cons = constraints(pi, "ScheduleAnyway")
        return _constraints_scorer(pi, cons, feasible, all_nodes) if cons else None
    if not pi.owner_uid:
        return None
    return _default_scorer(pi, feasible, cache)


def normalize(scores: list[int]) -> None:
    """Invert and scale to 0-100: the least crowded node gets 100; ignored nodes get 0."""
    if not scores:
        return
    lo = min(scores)
    if lo < 0:
        valid = [s for s in scores if s >= 0]
        if not valid:
            scores[:] = [0] * len(scores)
            return
        lo = min(valid)
    hi = max(scores)
    if hi == 0:
        scores[:] = [MAX_NODE_SCORE if s >= 0 else 0 for s in scores]
        return
    top = hi + lo
    scores[:] = [MAX_NODE_SCORE * (top - s) // hi if s >= 0 else 0 for s in scores]
