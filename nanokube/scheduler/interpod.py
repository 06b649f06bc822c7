"""Inter-pod affinity and anti-affinity: the filter (required terms) and the score (preferred).

Upstream's `interpodaffinity` plugin. Terms select pods (label selector plus
namespaces) and name a topology key; a topology pair is (key, value of that
key on the node of a selected pod). The filter pre-computes, once per cycle:

- for the incoming pod's required affinity terms: the pairs of existing pods
  matching *all* its terms; a node passes when, for every term, its pair has
  such a pod (or when no pod matches anywhere and the pod matches its own
  terms: the first pod of a group that wants to be together);
- for its required anti-affinity terms: the pairs of existing pods matching
  each term; a node in such a pair fails;
- for existing pods' required anti-affinity terms that match the incoming
  pod: their pairs; a node in one fails ("existing pods anti-affinity").

The score sums, per topology pair, the weights of preferred terms in both
directions (the incoming pod's terms over existing pods, and existing pods'
terms over the incoming pod, their required affinity terms counting weight 1),
anti-affinity subtracting, and scales the node scores to 0-100 min-max.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nanokube.scheduler.filters import Status
from nanokube.scheduler.matching import PodTerm
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

Labels = Mapping[str, str]
Pair = tuple[str, str]

MAX_NODE_SCORE = 100
HARD_POD_AFFINITY_WEIGHT = 1
ERR_AFFINITY = Status(("node(s) didn't match pod affinity rules",), True)
ERR_ANTI_AFFINITY = Status(("node(s) didn't match pod anti-affinity rules",))
ERR_EXISTING_ANTI_AFFINITY = Status(("node(s) didn't satisfy existing pods anti-affinity rules",))


def _matches(term: PodTerm, pod: PodInfo, ns_labels: Mapping[str, Labels]) -> bool:
    return term.matches(pod.namespace, pod.labels, ns_labels)


@dataclass
class AffinityFilterState:
    affinity_counts: dict[Pair, int] = field(default_factory=dict)
    anti_affinity_counts: dict[Pair, int] = field(default_factory=dict)
    existing_anti_counts: dict[Pair, int] = field(default_factory=dict)
    matches_own_terms: bool = False


def prefilter(
    pi: PodInfo,
    nodes: Iterable[NodeInfo],
    with_anti: Iterable[NodeInfo],
    ns_labels: Mapping[str, Labels],
) -> AffinityFilterState | None:
    """The cycle's counts, or None when neither the pod nor any existing pod has required terms."""
    state = AffinityFilterState()
    for ni in with_anti:
        for existing in ni.pods_with_required_anti_affinity.values():
            for term in existing.anti_affinity:
                value = ni.labels.get(term.topology_key)
                if value is not None and _matches(term, pi, ns_labels):
                    pair = (term.topology_key, value)
                    state.existing_anti_counts[pair] = state.existing_anti_counts.get(pair, 0) + 1
    if pi.affinity or pi.anti_affinity:
        for ni in nodes:
            labels = ni.labels
            for existing in ni.pods.values():
                if pi.affinity and all(_matches(t, existing, ns_labels) for t in pi.affinity):
                    for t in pi.affinity:
                        value = labels.get(t.topology_key)
                        if value is not None:
                            pair = (t.topology_key, value)
                            state.affinity_counts[pair] = state.affinity_counts.get(pair, 0) + 1
                for t in pi.anti_affinity:
                    value = labels.get(t.topology_key)
                    if value is not None and _matches(t, existing, ns_labels):
                        pair = (t.topology_key, value)
                        state.anti_affinity_counts[pair] = (
                            state.anti_affinity_counts.get(pair, 0) + 1
                        )
        state.matches_own_terms = all(_matches(t, pi, ns_labels) for t in pi.affinity)
    elif not state.existing_anti_counts:
        return None
    return state


def filter_affinity(state: AffinityFilterState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    labels = ni.labels
    if pi.affinity:
        exist = True
        for t in pi.affinity:
            value = labels.get(t.topology_key)
            if value is None:
                return ERR_AFFINITY
            if state.affinity_counts.get((t.topology_key, value), 0) <= 0:
                exist = False
        if not exist and (state.affinity_counts or not state.matches_own_terms):
            return ERR_AFFINITY
    for t in pi.anti_affinity:
        value = labels.get(t.topology_key)
        if value is not None and state.anti_affinity_counts.get((t.topology_key, value), 0) > 0:
            return ERR_ANTI_AFFINITY
    for (key, value), n in state.existing_anti_counts.items():
        if n > 0 and labels.get(key) == value:
            return ERR_EXISTING_ANTI_AFFINITY
    return None


ScoreState = dict[str, dict[str, int]]  # topology key -> value -> summed weight


def _process(
    scores: ScoreState,
    terms: Iterable[PodTerm],
    pod: PodInfo,
    node_labels: Labels,
    ns_labels: Mapping[str, Labels],
    multiplier: int,
    weight: int | None = None,
) -> None:
    for t in terms:
        value = node_labels.get(t.topology_key)
        if value is None or not _matches(t, pod, ns_labels):
            continue
        by_value = scores.setdefault(t.topology_key, {})
        by_value[value] = (
            by_value.get(value, 0) + (t.weight if weight is None else weight) * multiplier
        )


def prescore(
    pi: PodInfo,
    all_nodes: Iterable[NodeInfo],
    with_affinity: Iterable[NodeInfo],
    ns_labels: Mapping[str, Labels],
) -> ScoreState | None:
    """Summed weights per topology pair, or None when nothing differs between nodes."""
    has_own = bool(pi.preferred_affinity or pi.preferred_anti_affinity)
    scores: ScoreState = {}
    for ni in all_nodes if has_own else with_affinity:
        labels = ni.labels
        if not labels:
            continue
        for existing in ni.pods.values() if has_own else ni.pods_with_affinity.values():
            _process(scores, pi.preferred_affinity, existing, labels, ns_labels, 1)
            _process(scores, pi.preferred_anti_affinity, existing, labels, ns_labels, -1)
            _process(scores, existing.affinity, pi, labels, ns_labels, 1, HARD_POD_AFFINITY_WEIGHT)
            _process(scores, existing.preferred_affinity, pi, labels, ns_labels, 1)
            _process(scores, existing.preferred_anti_affinity, pi, labels, ns_labels, -1)
    return scores or None


def score(state: ScoreState, pi: PodInfo, ni: NodeInfo) -> int:
    total = 0
    labels = ni.labels
    for key, by_value in state.items():
        value = labels.get(key)
        if value is not None:
            total += by_value.get(value, 0)
    return total


def normalize(scores: list[int]) -> None:
    lo, hi = min(scores), max(scores)
    diff = hi - lo
    for i, s in enumerate(scores):
        scores[i] = int(MAX_NODE_SCORE * (s - lo) / diff) if diff > 0 else 0
