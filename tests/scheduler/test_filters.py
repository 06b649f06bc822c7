"""Filters over plain node and pod dicts: each upstream default filter, its reasons and verdicts."""

from __future__ import annotations

from typing import Any

from sched_helpers import make_node, make_pod

from nanokube.scheduler.cache import Cache
from nanokube.scheduler.filters import Status
from nanokube.scheduler.framework import Algorithm
from nanokube.scheduler.nodeinfo import PodInfo

Obj = dict[str, Any]


def check(pod: Obj, node: Obj, existing: list[Obj] = (), others: list[Obj] = ()) -> Status | None:  # type: ignore[assignment]
    """The first failing filter's status for `pod` on `node` (None: it fits)."""
    cache = Cache()
    for n in (node, *others):
        cache.add_node(n)
    for p in existing:
        cache.add_pod(p)
    algorithm = Algorithm(cache)
    pi = PodInfo(pod)
    state, chain = algorithm.prefilter(pi, cache.node_list())
    return algorithm.run_filters(state, pi, cache.nodes[node["metadata"]["name"]], chain)


def on(node: str, pod: Obj) -> Obj:
    pod["spec"]["nodeName"] = node
    return pod


def reasons(st: Status | None) -> tuple[str, ...]:
    return st.reasons if st is not None else ()


def required_affinity(*terms: Obj) -> Obj:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


def expr(key: str, op: str, *values: str) -> Obj:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


# -- node conditions -------------------------------------------------------------------


def test_cordoned_node_unless_tolerated() -> None:
    node = make_node("n", unschedulable=True)
    assert check(make_pod("p"), node) == Status(("node(s) were unschedulable",), True)
    tolerant = make_pod(
        "p",
        tolerations=[
            {
                "key": "node.kubernetes.io/unschedulable",
                "operator": "Exists",
                "effect": "NoSchedule",
            }
        ],
    )
    assert check(tolerant, node) is None


def test_not_ready_node_is_excluded_through_its_taint() -> None:
    st = check(make_pod("p"), make_node("n", ready="False"))
    assert st == Status(("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",), True)
    st = check(make_pod("p"), make_node("n", ready="Unknown"))
    assert reasons(st) == ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)
    daemon = make_pod("p", tolerations=[{"operator": "Exists"}])
    assert check(daemon, make_node("n", ready="False")) is None


def test_taints_and_tolerations() -> None:
    node = make_node("n", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert reasons(check(make_pod("p"), node)) == ("node(s) had untolerated taint {dedicated: db}",)
    equal = make_pod("p", tolerations=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert check(equal, node) is None
    wrong_value = make_pod("p", tolerations=[{"key": "dedicated", "value": "web"}])
    assert check(wrong_value, node) is not None
    exists_any_effect = make_pod("p", tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert check(exists_any_effect, node) is None
    prefer = make_node("n", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    assert check(make_pod("p"), prefer) is None  # only a score


def test_no_execute_taints_filter_too() -> None:
    node = make_node("n", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])
    assert check(make_pod("p"), node) is not None
    assert (
        check(
            make_pod("p", tolerations=[{"key": "k", "operator": "Exists", "effect": "NoExecute"}]),
            node,
        )
        is None
    )


# -- node selection ----------------------------------------------------------------------

AFFINITY_ERR = Status(("node(s) didn't match Pod's node affinity/selector",), True)


def test_node_selector() -> None:
    node = make_node("n", labels={"disk": "ssd"})
    assert check(make_pod("p", nodeSelector={"disk": "ssd"}), node) is None
    assert check(make_pod("p", nodeSelector={"disk": "hdd"}), node) == AFFINITY_ERR


def test_required_node_affinity_operators() -> None:
    node = make_node("n", labels={"zone": "a", "cores": "16"})
    cases = [
        (expr("zone", "In", "a", "b"), True),
        (expr("zone", "In", "b"), False),
        (expr("zone", "NotIn", "b"), True),
        (expr("zone", "NotIn", "a"), False),
        (expr("zone", "Exists"), True),
        (expr("gpu", "Exists"), False),
        (expr("gpu", "DoesNotExist"), True),
        (expr("cores", "Gt", "8"), True),
        (expr("cores", "Gt", "16"), False),
        (expr("cores", "Lt", "32"), True),
        (expr("zone", "Gt", "1"), False),  # not a number
        ({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}, True),
        ({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n"]}]}, False),
        ({}, False),  # an empty term matches nothing
    ]
    for term, fits in cases:
        st = check(make_pod("p", affinity=required_affinity(term)), node)
        assert (st is None) == fits, term


def test_terms_are_ored_and_selector_anded_with_affinity() -> None:
    node = make_node("n", labels={"zone": "a"})
    pod = make_pod(
        "p", affinity=required_affinity(expr("zone", "In", "x"), expr("zone", "In", "a"))
    )
    assert check(pod, node) is None
    pod["spec"]["nodeSelector"] = {"zone": "b"}
    assert check(pod, node) == AFFINITY_ERR


def test_node_name() -> None:
    node = make_node("n")
    assert check(make_pod("p", nodeName="n"), node) is None
    assert reasons(check(make_pod("p", nodeName="m"), node)) == (
        "node(s) didn't match the requested node name",
    )


# -- ports and resources -------------------------------------------------------------------


def with_port(pod: Obj, port: int, host_ip: str = "", protocol: str = "TCP") -> Obj:
    p: Obj = {"containerPort": port, "hostPort": port, "protocol": protocol}
    if host_ip:
        p["hostIP"] = host_ip
    pod["spec"]["containers"][0]["ports"] = [p]
    return pod


def test_host_port_conflicts() -> None:
    node = make_node("n")
    existing = [on("n", with_port(make_pod("a"), 8080, "10.0.0.1"))]
    err = ("node(s) didn't have free ports for the requested pod ports",)
    assert reasons(check(with_port(make_pod("p"), 8080), node, existing)) == err  # 0.0.0.0 vs any
    assert reasons(check(with_port(make_pod("p"), 8080, "10.0.0.1"), node, existing)) == err
    assert check(with_port(make_pod("p"), 8080, "10.0.0.2"), node, existing) is None
    assert check(with_port(make_pod("p"), 8080, protocol="UDP"), node, existing) is None
    assert check(with_port(make_pod("p"), 9090), node, existing) is None


def test_resources_fit_and_every_shortfall_is_told() -> None:
    node = make_node("n", cpu="2", memory="1Gi", pods="2")
    existing = [on("n", make_pod("a", cpu="1500m", memory="512Mi"))]
    assert check(make_pod("p", cpu="500m", memory="512Mi"), node, existing) is None
    st = check(make_pod("p", cpu="600m", memory="600Mi"), node, existing)
    assert st == Status(("Insufficient cpu", "Insufficient memory"), False)
    # More than the whole node: preemption cannot help.
    assert check(make_pod("p", cpu="3"), node) == Status(("Insufficient cpu",), True)
    existing.append(on("n", make_pod("b")))
    assert reasons(check(make_pod("p"), node, existing)) == ("Too many pods",)


def test_init_containers_count_by_the_max_rule() -> None:
    node = make_node("n", cpu="1")
    pod = make_pod("p", cpu="100m")
    pod["spec"]["initContainers"] = [
        {"name": "i", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}
    ]
    assert reasons(check(pod, node)) == ("Insufficient cpu",)


def test_extended_resources() -> None:
    node = make_node("n")
    node["status"]["allocatable"]["example.com/dongle"] = "1"
    pod = make_pod("p")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"example.com/dongle": "2"}}
    assert check(pod, node) == Status(("Insufficient example.com/dongle",), True)


def test_terminating_pods_still_hold_their_resources() -> None:
    node = make_node("n", cpu="1")
    old = on("n", make_pod("old", cpu="1"))
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert reasons(check(make_pod("p", cpu="500m"), node, [old])) == ("Insufficient cpu",)


# -- pod topology spread -----------------------------------------------------------------------


def spread(max_skew: int = 1, key: str = "zone", **extra: Any) -> Obj:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def test_topology_spread_max_skew() -> None:
    a = make_node("a", labels={"zone": "1"})
    b = make_node("b", labels={"zone": "2"})
    existing = [on("a", make_pod("w1", labels={"app": "web"}))]
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=[spread()])
    err = ("node(s) didn't match pod topology spread constraints",)
    assert reasons(check(pod, a, existing, [b])) == err
    assert check(pod, b, existing, [a]) is None
    pod["spec"]["topologySpreadConstraints"] = [spread(max_skew=2)]
    assert check(pod, a, existing, [b]) is None


def test_topology_spread_missing_label_and_min_domains() -> None:
    a = make_node("a", labels={"zone": "1"})
    bare = make_node("bare")
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=[spread()])
    st = check(pod, bare, [], [a])
    assert st == Status(
        ("node(s) didn't match pod topology spread constraints (missing required label)",), True
    )
    # One domain, minDomains 2: the global minimum counts as 0, so a second pod in zone 1 is too many.
    existing = [on("a", make_pod("w1", labels={"app": "web"}))]
    pod["spec"]["topologySpreadConstraints"] = [spread(minDomains=2)]
    assert check(pod, a, existing) is not None
    pod["spec"]["topologySpreadConstraints"] = [spread()]
    assert check(pod, a, existing) is None


def test_topology_spread_only_counts_matching_pods_of_the_namespace() -> None:
    a = make_node("a", labels={"zone": "1"})
    b = make_node("b", labels={"zone": "2"})
    existing = [
        on("a", make_pod("other-app", labels={"app": "db"})),
        on("a", make_pod("other-ns", namespace="prod", labels={"app": "web"})),
    ]
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=[spread()])
    assert check(pod, a, existing, [b]) is None


# -- inter-pod affinity ------------------------------------------------------------------------


def pod_affinity(kind: str, key: str, labels: dict[str, str], **term: Any) -> Obj:
    return {
        kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": key, "labelSelector": {"matchLabels": labels}, **term}
            ]
        }
    }


def test_pod_affinity_requires_a_matching_pod_in_the_domain() -> None:
    a = make_node("a", labels={"zone": "1"})
    b = make_node("b", labels={"zone": "2"})
    existing = [on("a", make_pod("cache", labels={"app": "cache"}))]
    pod = make_pod("p", affinity=pod_affinity("podAffinity", "zone", {"app": "cache"}))
    assert check(pod, a, existing, [b]) is None
    assert check(pod, b, existing, [a]) == Status(
        ("node(s) didn't match pod affinity rules",), True
    )


def test_first_pod_of_a_self_affine_group_may_go_anywhere() -> None:
    a = make_node("a", labels={"zone": "1"})
    pod = make_pod(
        "p", labels={"app": "web"}, affinity=pod_affinity("podAffinity", "zone", {"app": "web"})
    )
    assert check(pod, a) is None
    other = make_pod("q", affinity=pod_affinity("podAffinity", "zone", {"app": "web"}))
    assert check(other, a) is not None


def test_pod_anti_affinity_and_existing_pods_anti_affinity() -> None:
    a = make_node("a", labels={"zone": "1"})
    b = make_node("b", labels={"zone": "2"})
    existing = [on("a", make_pod("web-0", labels={"app": "web"}))]
    pod = make_pod("p", affinity=pod_affinity("podAntiAffinity", "zone", {"app": "web"}))
    assert check(pod, a, existing, [b]) == Status(("node(s) didn't match pod anti-affinity rules",))
    assert check(pod, b, existing, [a]) is None
    loner = on(
        "a", make_pod("loner", affinity=pod_affinity("podAntiAffinity", "zone", {"app": "web"}))
    )
    incoming = make_pod("web-1", labels={"app": "web"})
    assert check(incoming, a, [loner], [b]) == Status(
        ("node(s) didn't satisfy existing pods anti-affinity rules",)
    )
    assert check(incoming, b, [loner], [a]) is None


def test_affinity_term_namespaces() -> None:
    a = make_node("a", labels={"zone": "1"})
    existing = [on("a", make_pod("cache", namespace="infra", labels={"app": "cache"}))]
    own_ns = make_pod("p", affinity=pod_affinity("podAffinity", "zone", {"app": "cache"}))
    assert check(own_ns, a, existing) is not None  # the term covers the pod's own namespace only
    named = make_pod(
        "p", affinity=pod_affinity("podAffinity", "zone", {"app": "cache"}, namespaces=["infra"])
    )
    assert check(named, a, existing) is None
    every = make_pod(
        "p", affinity=pod_affinity("podAffinity", "zone", {"app": "cache"}, namespaceSelector={})
    )
    assert check(every, a, existing) is None
