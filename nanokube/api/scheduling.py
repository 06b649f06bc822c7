"""Scheduling rules that more than the scheduler applies: node selectors, node affinity, taints.

Upstream keeps these in `k8s.io/component-helpers/scheduling/corev1` so that
the scheduler, the DaemonSet controller, the node lifecycle controller and the
volume binder agree on them; nanokube keeps them here for the same reason
(controllers may not import the scheduler). Pure functions over API dicts:

- a `NodeSelector` (`nodeSelectorTerms`) matches a node when any term does;
  a term matches when all its `matchExpressions` (on labels) and
  `matchFields` (only `metadata.name`, `In`/`NotIn` one value) do; an empty
  or invalid term matches nothing (upstream's `MatchNodeSelectorTerms`);
- a pod's *required node affinity* is its `nodeSelector` map AND the
  required terms of `affinity.nodeAffinity` (`GetRequiredNodeAffinity`);
- a toleration tolerates a taint when effect, key and (for `Equal`) value
  agree (`Toleration.ToleratesTaint`, `TolerationsTolerateTaint`,
  `FindMatchingUntoleratedTaint`).

Node selectors are compiled into closures once (per pod or per owner), so a
loop over nodes only calls them: the scheduler runs them for every node of
every cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nanokube.api import selectors
from nanokube.api.errors import StatusError

Obj = dict[str, Any]
Labels = Mapping[str, str]
# (node labels, node name) -> whether the node matches
NodeMatcher = Callable[[Labels, str], bool]

_OPERATORS = {
    "In": selectors.IN,
    "NotIn": selectors.NOT_IN,
    "Exists": selectors.EXISTS,
    "DoesNotExist": selectors.DOES_NOT_EXIST,
    "Gt": selectors.GREATER_THAN,
    "Lt": selectors.LESS_THAN,
}


def _never(labels: Labels, name: str) -> bool:
    return False


def _not_in(values: frozenset[str]) -> Callable[[str], bool]:
    return lambda name: name not in values


def compile_node_selector_term(term: Obj) -> NodeMatcher:
    """One `NodeSelectorTerm`: matchExpressions on labels AND matchFields on metadata.name."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return _never
    try:
        reqs = [
            selectors.Requirement.new(
                e.get("key", ""), _OPERATORS[e.get("operator", "")], e.get("values") or []
            )
            for e in expressions
        ]
    except (KeyError, StatusError):
        return _never  # an invalid term matches nothing, as upstream's lazy-error selector
    label_match = selectors.LabelSelector(tuple(reqs)).matches
    name_checks: list[Callable[[str], bool]] = []
    for f in fields:
        values = frozenset(f.get("values") or ())
        if f.get("key") != "metadata.name" or len(values) != 1:
            return _never
        if f.get("operator") == "In":
            name_checks.append(values.__contains__)
        elif f.get("operator") == "NotIn":
            name_checks.append(_not_in(values))
        else:
            return _never

    def match(labels: Labels, name: str) -> bool:
        return label_match(labels) and all(check(name) for check in name_checks)

    return match


def compile_node_selector(selector: Obj | None) -> NodeMatcher | None:
    """A `NodeSelector` (terms ORed), or None when there is none (every node matches)."""
    if selector is None:
        return None
    terms = [compile_node_selector_term(t) for t in selector.get("nodeSelectorTerms") or ()]
    if not terms:
        return _never
    if len(terms) == 1:
        return terms[0]
    return lambda labels, name: any(t(labels, name) for t in terms)


def _labels_match(wanted: Labels) -> Callable[[Labels], bool]:
    items = tuple(wanted.items())

    def match(labels: Labels) -> bool:
        for k, v in items:  # a loop, not all(): this runs per node per pod
            if labels.get(k) != v:
                return False
        return True

    return match


def compile_required_node_affinity(pod_spec: Obj) -> NodeMatcher | None:
    """`GetRequiredNodeAffinity(pod).Match`: `nodeSelector` AND the required affinity terms.

    None when the pod constrains neither, so a caller can skip the check altogether.
    """
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    terms = compile_node_selector(required)
    node_selector = pod_spec.get("nodeSelector") or {}
    if not node_selector:
        return terms
    labels_match = _labels_match(node_selector)
    if terms is None:
        return lambda labels, name: labels_match(labels)
    return lambda labels, name: labels_match(labels) and terms(labels, name)


def match_node(matcher: NodeMatcher | None, node: Obj) -> bool:
    """Apply a compiled matcher (None: no constraint) to a Node object."""
    if matcher is None:
        return True
    md = node.get("metadata") or {}
    return matcher(md.get("labels") or {}, md.get("name", ""))


def matches_node_selector(selector: Obj | None, node: Obj) -> bool:
    """`MatchNodeSelectorTerms` on a Node object (no selector: every node matches)."""
    return match_node(compile_node_selector(selector), node)


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """`Toleration.ToleratesTaint`: effect, key and (for Equal) value must agree."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """`TolerationsTolerateTaint`: some toleration tolerates the taint."""
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(
    taints: Iterable[Obj], tolerations: list[Obj], effects: tuple[str, ...]
) -> Obj | None:
    """`FindMatchingUntoleratedTaint`: the first taint with one of `effects` not tolerated."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tolerations, taint):
            return taint
    return None
