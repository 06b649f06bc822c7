"""The cycle's edges: how many nodes are searched, the failure message, preemption's choices."""

from __future__ import annotations

from sched_helpers import make_node, make_pod

from nanokube.scheduler import preemption
from nanokube.scheduler.cache import Cache
from nanokube.scheduler.filters import Status
from nanokube.scheduler.framework import (
    Algorithm,
    FitError,
    fit_message,
    num_feasible_nodes_to_find,
)
from nanokube.scheduler.nodeinfo import PodInfo


def test_adaptive_number_of_nodes_to_find() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(100) == 100
    assert num_feasible_nodes_to_find(1000) == 420  # 50 - 1000/125 = 42%
    assert num_feasible_nodes_to_find(5000) == 500  # 10%
    assert num_feasible_nodes_to_find(10000) == 500  # at least 5%
    assert num_feasible_nodes_to_find(1000, percentage=5) == 100  # never fewer than 100
    assert num_feasible_nodes_to_find(1000, percentage=100) == 1000


def test_fit_message_counts_and_sorts_reasons() -> None:
    statuses = {
        "a": Status(("Insufficient cpu", "Insufficient memory")),
        "b": Status(("node(s) didn't match Pod's node affinity/selector",), True),
        "c": Status(("node(s) didn't match Pod's node affinity/selector",), True),
    }
    assert fit_message(3, statuses, "preemption: x.") == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: x."
    )
    assert fit_message(0, {}) == "no nodes available to schedule pods"


def test_search_resumes_where_the_last_cycle_stopped() -> None:
    cache = Cache()
    for i in range(300):
        cache.add_node(make_node(f"n{i:03d}"))
    algorithm = Algorithm(cache, percentage_of_nodes_to_score=10)
    pi = PodInfo(make_pod("p"))
    nodes = cache.node_list()
    state, chain = algorithm.prefilter(pi, nodes)
    first, _ = algorithm.find_feasible(pi, nodes, state, chain)
    second, _ = algorithm.find_feasible(pi, nodes, state, chain)
    assert len(first) == len(second) == 100
    assert first[-1].name == "n099" and second[0].name == "n100"


def cluster(*nodes: tuple[str, str]) -> tuple[Cache, Algorithm]:
    cache = Cache()
    for name, cpu in nodes:
        cache.add_node(make_node(name, cpu=cpu))
    return cache, Algorithm(cache, seed=1)


def victim(name: str, node: str, cpu: str, priority: int) -> dict:
    pod = make_pod(name, cpu=cpu, nodeName=node, priority=priority)
    pod["metadata"]["uid"] = name
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    return pod


def fail(algorithm: Algorithm, pi: PodInfo) -> FitError:
    try:
        algorithm.schedule(pi)
    except FitError as e:
        return e
    raise AssertionError("the pod fit")


def test_preemption_picks_the_node_with_the_least_important_victims() -> None:
    cache, algorithm = cluster(("a", "2"), ("b", "2"))
    cache.add_pod(victim("a-mid", "a", "2", 50))
    cache.add_pod(victim("b-low-1", "b", "1", 10))
    cache.add_pod(victim("b-low-2", "b", "1", 10))
    pi = PodInfo(make_pod("p", cpu="1", priority=100))
    result = preemption.preempt(algorithm, pi, fail(algorithm, pi).statuses)
    assert result.candidate is not None
    assert result.candidate.node.name == "b"
    # One is enough: the first (equally important) is given back, the second goes.
    assert [v.name for v in result.candidate.victims] == ["b-low-2"]
    assert len(cache.nodes["b"].pods) == 2  # the simulation left the node as it was


def test_preemption_is_not_helpful_or_finds_no_victims() -> None:
    cache, algorithm = cluster(("small", "1"), ("full", "2"))
    cache.add_pod(victim("peer", "full", "2", 100))
    pi = PodInfo(make_pod("p", cpu="1500m", priority=100))
    err = fail(algorithm, pi)
    result = preemption.preempt(algorithm, pi, err.statuses)
    assert result.candidate is None
    assert err.message(f"preemption: {result.message}") == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
        "1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    )


def test_preemption_policy_never() -> None:
    cache, algorithm = cluster(("a", "1"))
    cache.add_pod(victim("low", "a", "1", 0))
    pi = PodInfo(make_pod("p", cpu="1", priority=100, preemptionPolicy="Never"))
    result = preemption.preempt(algorithm, pi, fail(algorithm, pi).statuses)
    assert result.message == "not eligible due to preemptionPolicy=Never."


def test_nominated_pods_reserve_their_room() -> None:
    cache, algorithm = cluster(("a", "2"))
    high = PodInfo(make_pod("high", cpu="1500m", priority=100))
    cache.set_nominated(high, "a")
    low = PodInfo(make_pod("low", cpu="1", priority=0))
    assert fail(algorithm, low).statuses["a"].reasons == ("Insufficient cpu",)
    higher = PodInfo(make_pod("higher", cpu="1", priority=1000))
    assert algorithm.schedule(higher) == "a"
