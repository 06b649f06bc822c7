"""Matching rules shared by filters, scores and preemption: node selectors, tolerations, pod terms.

Each rule is compiled once per pod (or node) into a plain predicate, so the
per-node loop only calls closures over dicts: node selector terms (upstream's
`nodeaffinity.NodeSelector`: terms ORed, requirements within a term ANDed, an
empty term matches nothing), taint toleration (`v1helper.TolerationsTolerateTaint`),
and pod affinity terms (label selector plus the namespaces the term covers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nanokube.api import selectors
from nanokube.api.errors import StatusError

Obj = dict[str, Any]
Labels = Mapping[str, str]
NodeMatcher = Callable[[Labels, str], bool]  # (node labels, node name) -> matches

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


def compile_term(term: Obj) -> NodeMatcher:
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
    """A `NodeSelector` (terms ORed), or None when the pod does not constrain nodes."""
    if selector is None:
        return None
    terms = [compile_term(t) for t in selector.get("nodeSelectorTerms") or ()]
    if not terms:
        return _never
    if len(terms) == 1:
        return terms[0]
    return lambda labels, name: any(t(labels, name) for t in terms)


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


def tolerated(tolerations: list[Obj], taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(
    taints: list[Obj], tolerations: list[Obj], effects: tuple[str, ...]
) -> Obj | None:
    """The first taint with one of `effects` that no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tolerations, taint):
            return taint
    return None


@dataclass(frozen=True, slots=True)
class PodTerm:
    """A compiled `PodAffinityTerm`: which pods it selects, and over what topology."""

    topology_key: str
    selector: selectors.LabelSelector
    namespaces: frozenset[str]  # named namespaces (the pod's own when nothing is said)
    namespace_selector: selectors.LabelSelector | None  # None: only `namespaces`
    weight: int = 0  # for preferred terms

    def matches(self, namespace: str, labels: Labels, ns_labels: Mapping[str, Labels]) -> bool:
        """Whether a pod (its namespace and labels) is selected by this term."""
        if namespace not in self.namespaces:
            sel = self.namespace_selector
            if sel is None or not sel.matches(ns_labels.get(namespace) or {}):
                return False
        return self.selector.matches(labels)


def compile_pod_term(term: Obj, own_namespace: str, weight: int = 0) -> PodTerm:
    """Upstream's `AffinityTerm`: no namespaces and no selector mean the pod's own namespace."""
    try:
        selector = selectors.label_selector_from_object(term.get("labelSelector"))
    except StatusError:
        selector = selectors.NOTHING
    names = frozenset(term.get("namespaces") or ())
    ns_sel_obj = term.get("namespaceSelector")
    ns_sel = None
    if ns_sel_obj is not None:
        try:
            ns_sel = selectors.label_selector_from_object(ns_sel_obj)
        except StatusError:
            ns_sel = selectors.NOTHING
    elif not names:
        names = frozenset((own_namespace,))
    return PodTerm(term.get("topologyKey") or "", selector, names, ns_sel, weight)


def compile_pod_terms(
    affinity: Obj | None, field: str, namespace: str
) -> tuple[list[PodTerm], list[PodTerm]]:
    """(required, preferred) terms of `podAffinity` or `podAntiAffinity`."""
    section = (affinity or {}).get(field) or {}
    required = [
        compile_pod_term(t, namespace)
        for t in section.get("requiredDuringSchedulingIgnoredDuringExecution") or ()
    ]
    preferred = [
        compile_pod_term(w.get("podAffinityTerm") or {}, namespace, int(w.get("weight") or 0))
        for w in section.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
    ]
    return required, preferred
