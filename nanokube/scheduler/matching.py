"""Pod affinity terms, compiled once per pod for the filters, scores and preemption.

A `PodAffinityTerm` becomes a `PodTerm`: its label selector plus the
namespaces it covers, so the per-node loop only calls `PodTerm.matches`. The
node-side rules (node selectors, node affinity, taints and tolerations) are
shared with the controllers and live in `nanokube.api.scheduling`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nanokube.api import selectors
from nanokube.api.errors import StatusError

Obj = dict[str, Any]
Labels = Mapping[str, str]


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
