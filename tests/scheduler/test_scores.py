"""Scores and the choice of node: upstream's formulas, normalisation and weights."""

from __future__ import annotations

from typing import Any

from sched_helpers import make_node, make_pod

from nanokube.scheduler import scores
from nanokube.scheduler.cache import Cache
from nanokube.scheduler.framework import Algorithm
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

Obj = dict[str, Any]


def info(node: Obj, *pods: Obj) -> NodeInfo:
    ni = NodeInfo(node["metadata"]["name"])
    ni.set_node(node)
    for p in pods:
        p["spec"]["nodeName"] = ni.name
        ni.add_pod(PodInfo(p))
    return ni


def test_least_allocated_as_upstream() -> None:
    # Upstream's example: cpu 4000m, memory 10000 with 3000m / 5000 requested in all.
    node = make_node("n", cpu="4", memory="10000")
    pod = PodInfo(make_pod("p", cpu="1", memory="2000"))
    ni = info(node, make_pod("a", cpu="2", memory="3000"))
    # cpu (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50 -> 37
    assert scores.least_allocated(pod, ni) == 37


def test_least_allocated_counts_best_effort_pods_as_non_zero() -> None:
    ni = info(make_node("n", cpu="1", memory="1Gi"))
    pod = PodInfo(make_pod("p"))  # 100m and 200Mi by the non-zero rule
    assert scores.least_allocated(pod, ni) == ((900 * 100 // 1000) + (824 * 100 // 1024)) // 2


def test_balanced_allocation() -> None:
    ni = info(make_node("n", cpu="4", memory="4Gi"))
    even = PodInfo(make_pod("p", cpu="1", memory="1Gi"))
    assert scores.balanced_allocation(even, ni) == 100
    skewed = PodInfo(make_pod("p", cpu="2", memory="0"))
    assert scores.balanced_allocation(skewed, ni) == 75  # |0.5 - 0| / 2 = 0.25


def test_taint_toleration_prefers_fewer_untolerated_prefer_no_schedule_taints() -> None:
    taints = [
        {"key": "a", "effect": "PreferNoSchedule"},
        {"key": "b", "effect": "PreferNoSchedule"},
    ]
    ni = info(make_node("n", taints=taints))
    assert scores.taint_toleration(PodInfo(make_pod("p")), ni) == 2
    pod = PodInfo(make_pod("p", tolerations=[{"key": "a", "operator": "Exists"}]))
    assert scores.taint_toleration(pod, ni) == 1
    raw = [2, 1, 0]
    scores.reverse_normalize(raw)
    assert raw == [0, 50, 100]


def test_default_normalize() -> None:
    raw = [10, 5, 0]
    scores.default_normalize(raw)
    assert raw == [100, 50, 0]
    zeros = [0, 0]
    scores.default_normalize(zeros)
    assert zeros == [0, 0]


def schedule_all(nodes: list[Obj], pods: list[Obj], existing: list[Obj] = ()) -> dict[str, str]:  # type: ignore[assignment]
    cache = Cache()
    for n in nodes:
        cache.add_node(n)
    for p in existing:
        cache.add_pod(p)
    algorithm = Algorithm(cache, seed=7)
    placed = {}
    for p in pods:
        p["metadata"]["uid"] = p["metadata"]["name"]
        pi = PodInfo(p)
        node = algorithm.schedule(pi)
        cache.assume(pi, node)
        placed[pi.name] = node
    return placed


def test_least_allocated_wins_on_an_emptier_node() -> None:
    nodes = [make_node("busy"), make_node("idle")]
    busy = make_pod("x", cpu="3", memory="6Gi", nodeName="busy")
    assert schedule_all(nodes, [make_pod("p", cpu="100m", memory="100Mi")], [busy]) == {"p": "idle"}


def test_preferred_node_affinity() -> None:
    nodes = [make_node("a", labels={"disk": "hdd"}), make_node("b", labels={"disk": "ssd"})]
    pref = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                    },
                }
            ]
        }
    }
    pods = [make_pod(f"p{i}", affinity=pref) for i in range(5)]
    assert set(schedule_all(nodes, pods).values()) == {"b"}


def test_default_spreading_of_one_owner_over_nodes_and_zones() -> None:
    nodes = [
        make_node(f"n{i}", labels={"topology.kubernetes.io/zone": f"z{i % 2}"}) for i in range(4)
    ]
    placed = schedule_all(nodes, [make_pod(f"web-{i}", owner="web") for i in range(8)])
    per_node: dict[str, int] = {}
    for node in placed.values():
        per_node[node] = per_node.get(node, 0) + 1
    assert per_node == {"n0": 2, "n1": 2, "n2": 2, "n3": 2}


def test_schedule_anyway_spread_prefers_the_emptier_zone() -> None:
    nodes = [make_node("a", labels={"zone": "1"}), make_node("b", labels={"zone": "2"})]
    existing = [make_pod(f"w{i}", labels={"app": "web"}, nodeName="a") for i in range(3)]
    constraint = {
        "maxSkew": 1,
        "topologyKey": "zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "web"}},
    }
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=[constraint])
    assert schedule_all(nodes, [pod], existing) == {"p": "b"}


def test_preferred_pod_affinity_and_anti_affinity() -> None:
    nodes = [make_node("a", labels={"zone": "1"}), make_node("b", labels={"zone": "2"})]
    existing = [make_pod("cache", labels={"app": "cache"}, nodeName="b")]

    def preferred(kind: str) -> Obj:
        return {
            kind: {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "zone",
                            "labelSelector": {"matchLabels": {"app": "cache"}},
                        },
                    }
                ]
            }
        }

    near = make_pod("near", affinity=preferred("podAffinity"))
    far = make_pod("far", affinity=preferred("podAntiAffinity"))
    assert schedule_all(nodes, [near], existing) == {"near": "b"}
    assert schedule_all(nodes, [far], existing) == {"far": "a"}


def test_ties_are_broken_at_random() -> None:
    cache = Cache()
    for i in range(5):
        cache.add_node(make_node(f"n{i}"))
    algorithm = Algorithm(cache, seed=3)
    pod = PodInfo(make_pod("p"))
    assert len({algorithm.schedule(pod) for _ in range(40)}) > 1
