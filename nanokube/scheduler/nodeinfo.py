"""Precomputed views of pods and nodes: what the filter and score loop reads.

Upstream's `framework.PodInfo` / `framework.NodeInfo`. A `PodInfo` is built once
per pod object (requests as integers, compiled selectors and affinity terms,
host ports), a `NodeInfo` once per node object and then kept current as pods
are added to and removed from it (requested resources, non-zero requests for
scoring, pod count, used host ports, the pods that carry affinity terms), so
that checking a node costs a few integer comparisons and no parsing, and
nothing is deep-copied per scheduling attempt. Both hold the API dicts they
were built from as read-only references.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import scheduling
from nanokube.api.scheduling import NodeMatcher
from nanokube.scheduler import requests
from nanokube.scheduler.matching import compile_pod_terms

Obj = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"


def pod_key(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def controller_uid(md: Obj) -> str:
    for ref in md.get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


class PodInfo:
    """A pod as the scheduler needs it; see the module docstring."""

    __slots__ = (
        "pod", "key", "uid", "namespace", "name", "labels", "priority", "preemption_policy",
        "created", "node_name", "nominated_node", "deleting", "scheduler_name", "owner_uid",
        "req", "ports", "tolerations", "required_node_affinity",
        "preferred_node_affinity", "affinity", "preferred_affinity", "anti_affinity",
        "preferred_anti_affinity", "spread_constraints", "has_pod_affinity",
    )  # fmt: skip

    def __init__(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod = pod
        self.namespace: str = md.get("namespace", "")
        self.name: str = md.get("name", "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = md.get("uid", "")
        self.labels: dict[str, str] = md.get("labels") or {}
        self.priority: int = int(spec.get("priority") or 0)
        self.preemption_policy: str = spec.get("preemptionPolicy") or "PreemptLowerPriority"
        self.created: str = md.get("creationTimestamp", "")
        self.node_name: str = spec.get("nodeName") or ""
        self.nominated_node: str = (pod.get("status") or {}).get("nominatedNodeName") or ""
        self.deleting = bool(md.get("deletionTimestamp"))
        self.scheduler_name: str = spec.get("schedulerName") or DEFAULT_SCHEDULER
        self.owner_uid = controller_uid(md)
        self.req = requests.pod_requests(spec)
        self.ports = requests.host_ports(spec)
        self.tolerations: list[Obj] = spec.get("tolerations") or []
        # nodeSelector AND required node affinity; None: the pod does not constrain nodes.
        self.required_node_affinity = scheduling.compile_required_node_affinity(spec)
        affinity = spec.get("affinity") or {}
        node_affinity = affinity.get("nodeAffinity") or {}
        self.preferred_node_affinity: list[tuple[int, NodeMatcher]] = []
        for pref in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            matcher = scheduling.compile_node_selector(
                {"nodeSelectorTerms": [pref.get("preference") or {}]}
            )
            if matcher is not None and pref.get("weight"):
                self.preferred_node_affinity.append((int(pref["weight"]), matcher))
        self.affinity, self.preferred_affinity = compile_pod_terms(
            affinity, "podAffinity", self.namespace
        )
        self.anti_affinity, self.preferred_anti_affinity = compile_pod_terms(
            affinity, "podAntiAffinity", self.namespace
        )
        self.has_pod_affinity = bool(
            self.affinity
            or self.preferred_affinity
            or self.anti_affinity
            or self.preferred_anti_affinity
        )
        self.spread_constraints: list[Obj] = spec.get("topologySpreadConstraints") or []

    def matches_node_selector(self, labels: dict[str, str], name: str) -> bool:
        """NodeSelector AND required node affinity (upstream's `RequiredNodeAffinity.Match`)."""
        matcher = self.required_node_affinity
        return matcher is None or matcher(labels, name)


NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def _condition_taints(node: Obj, taints: list[Obj]) -> list[Obj]:
    """The node's taints plus the one its Ready condition implies, if not already there.

    Upstream the node lifecycle controller writes `not-ready` (Ready False or
    absent) or `unreachable` (Ready Unknown) as NoSchedule taints and the
    scheduler sees only taints; deriving them here too means a node that is not
    Ready is never chosen, even before (or without) that controller, while pods
    that tolerate the taint (DaemonSet pods) still are placed there.
    """
    status = "False"
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            status = cond.get("status") or "Unknown"
    if status == "True":
        return taints
    key = UNREACHABLE_TAINT if status == "Unknown" else NOT_READY_TAINT
    if any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints):
        return taints
    return [*taints, {"key": key, "effect": "NoSchedule"}]


class NodeInfo:
    """A node and the pods assigned (or assumed) to it; see the module docstring."""

    __slots__ = (
        "name", "node", "labels", "taints", "unschedulable", "alloc_cpu", "alloc_memory",
        "alloc_ephemeral", "alloc_pods", "alloc_scalar", "req_cpu", "req_memory",
        "req_ephemeral", "req_scalar", "nz_cpu", "nz_memory", "pods", "ports",
        "pods_with_affinity", "pods_with_required_anti_affinity", "generation", "plain", "score_memo", "free_cpu", "free_memory", "free_ephemeral",
        "free_pods", "zone", "has_hostname",
    )  # fmt: skip

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Obj | None = None  # None: pods are known on a node the cache has not seen
        self.labels: dict[str, str] = {}
        self.zone: str | None = None  # the zone label, read by every spreading score
        self.has_hostname = False
        self.taints: list[Obj] = []
        self.unschedulable = False
        self.plain = True  # no taints and not cordoned: the node-condition filters pass
        self.score_memo: tuple[Any, int] | None = None  # see scores.resource_scores
        self.alloc_cpu = self.alloc_memory = self.alloc_ephemeral = self.alloc_pods = 0
        self.alloc_scalar: dict[str, int] = {}
        self.req_cpu = self.req_memory = self.req_ephemeral = 0
        self.req_scalar: dict[str, int] = {}
        self.nz_cpu = self.nz_memory = 0
        # allocatable - requested, kept with them: the resource filter's fast path.
        self.free_cpu = self.free_memory = self.free_ephemeral = self.free_pods = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: dict[tuple[str, int], set[str]] = {}  # (protocol, port) -> host IPs
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.generation = 0

    def set_node(self, node: Obj) -> None:
        md = node.get("metadata") or {}
        spec = node.get("spec") or {}
        self.node = node
        self.labels = md.get("labels") or {}
        self.zone = self.labels.get(ZONE_LABEL)
        self.has_hostname = HOSTNAME_LABEL in self.labels
        self.taints = _condition_taints(node, spec.get("taints") or [])
        self.unschedulable = bool(spec.get("unschedulable"))
        self.plain = not self.taints and not self.unschedulable
        alloc = requests.resource_list((node.get("status") or {}).get("allocatable"))
        self.alloc_cpu = alloc.pop(requests.CPU, 0)
        self.alloc_memory = alloc.pop(requests.MEMORY, 0)
        self.alloc_ephemeral = alloc.pop(requests.EPHEMERAL, 0)
        self.alloc_pods = alloc.pop(requests.PODS, 0)
        self.alloc_scalar = alloc
        self._update_free()
        self.generation += 1

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        self._account(pi, 1)
        if pi.has_pod_affinity:
            self.pods_with_affinity[pi.key] = pi
        if pi.anti_affinity:
            self.pods_with_required_anti_affinity[pi.key] = pi
        for ip, proto, port in pi.ports:
            self.ports.setdefault((proto, port), set()).add(ip)
        self.generation += 1

    def remove_pod(self, pi: PodInfo) -> bool:
        stored = self.pods.pop(pi.key, None)
        if stored is None:
            return False
        self._account(stored, -1)
        self.pods_with_affinity.pop(stored.key, None)
        self.pods_with_required_anti_affinity.pop(stored.key, None)
        for ip, proto, port in stored.ports:
            ips = self.ports.get((proto, port))
            if ips is not None:
                ips.discard(ip)
                if not ips:
                    del self.ports[(proto, port)]
        self.generation += 1
        return True

    def _account(self, pi: PodInfo, sign: int) -> None:
        r = pi.req
        self.req_cpu += sign * r.cpu
        self.req_memory += sign * r.memory
        self.req_ephemeral += sign * r.ephemeral
        self.nz_cpu += sign * r.nonzero_cpu
        self.nz_memory += sign * r.nonzero_memory
        for k, v in r.scalar.items():
            self.req_scalar[k] = self.req_scalar.get(k, 0) + sign * v
        self._update_free()

    def _update_free(self) -> None:
        self.free_cpu = self.alloc_cpu - self.req_cpu
        self.free_memory = self.alloc_memory - self.req_memory
        self.free_ephemeral = self.alloc_ephemeral - self.req_ephemeral
        self.free_pods = self.alloc_pods - len(self.pods)

    def port_conflict(self, ports: list[tuple[str, str, int]]) -> bool:
        """Upstream's `HostPortInfo.CheckConflict`: 0.0.0.0 conflicts with every IP."""
        for ip, proto, port in ports:
            used = self.ports.get((proto, port))
            if not used:
                continue
            if ip == "0.0.0.0" or "0.0.0.0" in used or ip in used:
                return True
        return False
