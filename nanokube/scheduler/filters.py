"""Filter plugins: can this pod run on this node? Upstream's default filters, in their order.

Each filter is a function `(state, pod, node) -> Status | None` (None: the node
passes). A `Status` carries upstream's reason strings, which the scheduler
counts across nodes into the `FailedScheduling` message, and whether the
failure is *unresolvable*: no preemption on that node could fix it (a node
selector that does not match, a taint, a pod bigger than the whole node), which
preemption reports as "Preemption is not helpful for scheduling".

The filters that need a view of the whole cluster (pod topology spread,
inter-pod affinity) keep their pre-computed counts in the cycle `state`; they
live in `topology` and `interpod`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from nanokube.api.scheduling import first_untolerated, tolerated
from nanokube.scheduler.nodeinfo import NodeInfo, PodInfo

if TYPE_CHECKING:
    from nanokube.scheduler.framework import CycleState


class Status(NamedTuple):
    reasons: tuple[str, ...]
    unresolvable: bool = False


Filter = Callable[["CycleState", PodInfo, NodeInfo], "Status | None"]

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

ERR_UNSCHEDULABLE = Status(("node(s) were unschedulable",), True)
ERR_NODE_NAME = Status(("node(s) didn't match the requested node name",), True)
ERR_NODE_AFFINITY = Status(("node(s) didn't match Pod's node affinity/selector",), True)
ERR_NODE_PORTS = Status(("node(s) didn't have free ports for the requested pod ports",))
_TOO_MANY_PODS = "Too many pods"


def node_unschedulable(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    """`spec.unschedulable` (cordon) keeps pods away unless they tolerate its taint."""
    if ni.unschedulable and not tolerated(pi.tolerations, UNSCHEDULABLE_TAINT):
        return ERR_UNSCHEDULABLE
    return None


def node_name(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    if pi.node_name and pi.node_name != ni.name:
        return ERR_NODE_NAME
    return None


def taint_toleration(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    """NoSchedule and NoExecute taints need a toleration (NotReady nodes carry one: see nodeinfo)."""
    if not ni.taints:
        return None
    taint = first_untolerated(ni.taints, pi.tolerations, ("NoSchedule", "NoExecute"))
    if taint is None:
        return None
    return Status(
        (f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",),
        True,
    )


def node_affinity(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    """`nodeSelector` and required node affinity (terms ORed, expressions ANDed)."""
    if pi.matches_node_selector(ni.labels, ni.name):
        return None
    return ERR_NODE_AFFINITY


def node_ports(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    if ni.port_conflict(pi.ports):
        return ERR_NODE_PORTS
    return None


def node_resources_fit(state: CycleState, pi: PodInfo, ni: NodeInfo) -> Status | None:
    """Requests (with nominated higher-priority pods) against allocatable, every shortfall told.

    A request larger than the node's whole allocatable is unresolvable: evicting
    pods cannot make room that the node does not have.
    """
    r = pi.req
    if not state.nominated and not r.scalar:
        # Fast path: everything fits outright (requests of 0 always fit upstream, and
        # fit here unless the node is already over-committed: then the exact check runs).
        if (
            r.cpu <= ni.free_cpu
            and r.memory <= ni.free_memory
            and r.ephemeral <= ni.free_ephemeral
            and ni.free_pods > 0
        ):
            return None
    cpu, memory, ephemeral, pods = r.cpu, r.memory, r.ephemeral, len(ni.pods) + 1
    nominated = state.nominated.get(ni.name) if state.nominated else None
    if nominated is not None:
        cpu += nominated.cpu
        memory += nominated.memory
        ephemeral += nominated.ephemeral
        pods += nominated.count
    reasons = []
    unresolvable = False
    if pods > ni.alloc_pods:
        reasons.append(_TOO_MANY_PODS)
    for name, want, alloc, used in (
        ("cpu", cpu, ni.alloc_cpu, ni.req_cpu),
        ("memory", memory, ni.alloc_memory, ni.req_memory),
        ("ephemeral-storage", ephemeral, ni.alloc_ephemeral, ni.req_ephemeral),
    ):
        if want and want > alloc - used:
            reasons.append(f"Insufficient {name}")
            unresolvable = unresolvable or want > alloc
    for name, want in r.scalar.items():
        alloc = ni.alloc_scalar.get(name, 0)
        if want > alloc - ni.req_scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
            unresolvable = unresolvable or want > alloc
    if not reasons:
        return None
    return Status(tuple(reasons), unresolvable)
