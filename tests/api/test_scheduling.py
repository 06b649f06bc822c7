"""nanokube.api.scheduling: node selector terms, required node affinity, taint tolerations.

Aspects: terms are ORed and expressions ANDed; empty and invalid terms match
nothing; matchFields only knows `metadata.name` with one value; `nodeSelector`
ANDs with the affinity terms and no constraint compiles to None; a toleration
tolerates a taint by effect, key and value; the first untolerated taint of the
asked effects is found.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import scheduling

Obj = dict[str, Any]


def node(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels}}


def expr(key: str, operator: str, *values: str) -> Obj:
    return {"key": key, "operator": operator, "values": list(values)}


def terms(*ts: Obj) -> Obj:
    return {"nodeSelectorTerms": list(ts)}


def test_terms_are_ored_and_expressions_anded() -> None:
    sel = terms(
        {"matchExpressions": [expr("zone", "In", "a"), expr("disk", "Exists")]},
        {"matchExpressions": [expr("zone", "In", "b")]},
    )
    assert scheduling.matches_node_selector(sel, node("n", zone="a", disk="ssd"))
    assert not scheduling.matches_node_selector(sel, node("n", zone="a"))
    assert scheduling.matches_node_selector(sel, node("n", zone="b"))
    assert not scheduling.matches_node_selector(sel, node("n", zone="c", disk="ssd"))


def test_operators() -> None:
    def match(e: Obj, **labels: str) -> bool:
        return scheduling.matches_node_selector(
            terms({"matchExpressions": [e]}), node("n", **labels)
        )

    assert match(expr("a", "NotIn", "x"))
    assert not match(expr("a", "NotIn", "x"), a="x")
    assert match(expr("a", "DoesNotExist"), b="1")
    assert match(expr("cpus", "Gt", "4"), cpus="8")
    assert not match(expr("cpus", "Gt", "4"), cpus="4")
    assert match(expr("cpus", "Lt", "4"), cpus="2")
    assert not match(expr("cpus", "Lt", "4"), cpus="many")


def test_empty_and_invalid_terms_match_nothing() -> None:
    everything = node("n", a="1")
    assert not scheduling.matches_node_selector(terms({}), everything)
    assert not scheduling.matches_node_selector(terms(), everything)
    assert not scheduling.matches_node_selector(
        terms({"matchExpressions": [expr("a", "In")]}), everything
    )
    assert not scheduling.matches_node_selector(
        terms({"matchExpressions": [expr("a", "Sometimes", "1")]}), everything
    )
    assert scheduling.matches_node_selector(None, everything)


def test_match_fields_know_only_metadata_name_with_one_value() -> None:
    def match(f: Obj, name: str) -> bool:
        return scheduling.matches_node_selector(terms({"matchFields": [f]}), node(name))

    assert match(expr("metadata.name", "In", "n1"), "n1")
    assert not match(expr("metadata.name", "In", "n1"), "n2")
    assert match(expr("metadata.name", "NotIn", "n1"), "n2")
    assert not match(expr("metadata.name", "In", "n1", "n2"), "n1")
    assert not match(expr("metadata.uid", "In", "n1"), "n1")
    assert not match(expr("metadata.name", "Exists"), "n1")


def test_required_node_affinity_ands_node_selector_with_terms() -> None:
    assert scheduling.compile_required_node_affinity({}) is None
    only_labels = scheduling.compile_required_node_affinity({"nodeSelector": {"disk": "ssd"}})
    assert scheduling.match_node(only_labels, node("n", disk="ssd"))
    assert not scheduling.match_node(only_labels, node("n", disk="hdd"))
    both = scheduling.compile_required_node_affinity(
        {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": terms(
                        {"matchFields": [expr("metadata.name", "In", "n1")]}
                    )
                }
            },
        }
    )
    assert scheduling.match_node(both, node("n1", disk="ssd"))
    assert not scheduling.match_node(both, node("n2", disk="ssd"))
    assert not scheduling.match_node(both, node("n1", disk="hdd"))
    assert scheduling.match_node(None, node("n"))


def test_tolerates_by_effect_key_and_value() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert scheduling.tolerates({"key": "k", "value": "v"}, taint)
    assert scheduling.tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert not scheduling.tolerates({"key": "k", "value": "w"}, taint)
    assert scheduling.tolerates({"key": "k", "operator": "Exists"}, taint)
    assert scheduling.tolerates({"operator": "Exists"}, taint)
    assert not scheduling.tolerates({"operator": "Exists", "effect": "NoExecute"}, taint)
    assert not scheduling.tolerates({"key": "other", "operator": "Exists"}, taint)
    assert not scheduling.tolerates({"key": "k", "operator": "Lt", "value": "v"}, taint)


def test_first_untolerated_taint_of_the_asked_effects() -> None:
    soft = {"key": "a", "effect": "PreferNoSchedule"}
    hard = {"key": "b", "effect": "NoSchedule"}
    evict = {"key": "c", "effect": "NoExecute"}
    taints = [soft, hard, evict]
    effects = ("NoSchedule", "NoExecute")
    assert scheduling.first_untolerated(taints, [], effects) is hard
    assert scheduling.first_untolerated(taints, [{"key": "b", "operator": "Exists"}], effects) is (
        evict
    )
    assert scheduling.first_untolerated(taints, [{"operator": "Exists"}], effects) is None
    assert scheduling.tolerated([{"key": "a", "operator": "Exists"}], soft)
    assert not scheduling.tolerated([], soft)
