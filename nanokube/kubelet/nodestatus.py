"""The Node object and node Lease a kubelet keeps, as plain dicts: shared by every node agent.

A kubelet registers its Node with labels, capacity, addresses, `nodeInfo` and
the conditions upstream's kubelet reports (`pkg/kubelet/nodestatus/setters.go`),
then proves it is alive by renewing a Lease named after the node in the
`kube-node-lease` namespace every 10 s (`pkg/kubelet/nodelease`); the node
lifecycle controller reads the Lease as the heartbeat. The full node status
is posted again only when it changes, or every `STATUS_REPORT_SECONDS` (5
minutes), as upstream's `nodeStatusReportFrequency`.

Pure functions, no I/O: the simulated nodes use them now, the real kubelet later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nanokube.api import meta

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40  # upstream's --node-lease-duration-seconds
LEASE_RENEW_SECONDS = 10.0  # upstream renews at a quarter of the duration
STATUS_REPORT_SECONDS = 300.0  # upstream's nodeStatusReportFrequency (5 min)

HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
ZONE_LABEL = "topology.kubernetes.io/zone"

# The conditions the kubelet owns, healthy, in the order upstream reports them.
_HEALTHY = (
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
# The pod network's state, as upstream's route controller writes it: down until the node
# has a pod CIDR (and routes to it), which keeps pods off the node through the
# `node.kubernetes.io/network-unavailable` taint.
_NETWORK_UP = ("NetworkUnavailable", "False", "RouteCreated", "RouteController created a route")
_NETWORK_DOWN = ("NetworkUnavailable", "True", "NoRouteCreated", "Node created without a route")


@dataclass
class NodeDescription:
    """What a kubelet knows about its machine, turned into a Node by `new_node`."""

    name: str
    internal_ip: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    labels: dict[str, str] = field(default_factory=dict)
    kubelet_version: str = "v1.33.1-nanokube"
    container_runtime_version: str = "simulated://1"
    os_image: str = "nanokube"
    kernel_version: str = ""
    kubelet_port: int = 10250
    # machineID/systemUUID/bootID: stable per node; derived from the name when empty.
    machine_id: str = ""


def healthy_conditions(existing: list[Obj] | None = None, network_ready: bool = True) -> list[Obj]:
    """The kubelet's conditions, healthy, heartbeat now; transition times kept when unchanged.

    `network_ready` says whether the node's pod network is up (it has a pod CIDR).
    """
    now = meta.now_rfc3339()
    before = {c.get("type"): c for c in existing or ()}
    rows = (*_HEALTHY, _NETWORK_UP if network_ready else _NETWORK_DOWN)
    out = []
    for type_, status, reason, message in rows:
        old = before.get(type_) or {}
        transition = old.get("lastTransitionTime") if old.get("status") == status else None
        cond = {
            "type": type_,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition or now,
            "reason": reason,
            "message": message,
        }
        if type_ == "NetworkUnavailable" and old.get("status") == status:
            # Written once by the network's owner, not a heartbeat of the kubelet.
            cond["lastHeartbeatTime"] = old.get("lastHeartbeatTime") or now
        out.append(cond)
    # Conditions others own (a node problem detector's) stay as they are.
    out += [c for t, c in before.items() if t not in {r[0] for r in rows}]
    return out


def condition(node: Obj, type_: str) -> Obj | None:
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_ready(node: Obj) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def network_ready(node: Obj) -> bool:
    cond = condition(node, "NetworkUnavailable")
    return cond is not None and cond.get("status") == "False"


def new_node(desc: NodeDescription, network_ready: bool = True) -> Obj:
    """The Node a kubelet registers: labels, capacity = allocatable, addresses, nodeInfo."""
    capacity = {
        "cpu": desc.cpu,
        "memory": desc.memory,
        "pods": desc.pods,
        "ephemeral-storage": desc.ephemeral_storage,
    }
    labels = {
        HOSTNAME_LABEL: desc.name,
        OS_LABEL: "linux",
        ARCH_LABEL: "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        **desc.labels,
    }
    machine_id = desc.machine_id or meta.new_uid().replace("-", "")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": desc.name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": healthy_conditions(network_ready=network_ready),
            "addresses": [
                {"type": "InternalIP", "address": desc.internal_ip},
                {"type": "Hostname", "address": desc.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": desc.kubelet_port}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": machine_id,
                "bootID": meta.new_uid(),
                "kernelVersion": desc.kernel_version,
                "osImage": desc.os_image,
                "containerRuntimeVersion": desc.container_runtime_version,
                "kubeletVersion": desc.kubelet_version,
                "kubeProxyVersion": "",  # deprecated, still required by the schema
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def internal_ip(node: Obj) -> str:
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP":
            return str(address.get("address", ""))
    return ""


def new_lease(node: Obj, duration: int = LEASE_DURATION_SECONDS) -> Obj:
    """The node's Lease, owned by its Node (so it goes when the Node goes), renewed now."""
    md = node.get("metadata") or {}
    lease: Obj = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": md.get("name", ""), "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": md.get("name", ""),
            "leaseDurationSeconds": duration,
            "renewTime": meta.now_micro(),
        },
    }
    if md.get("uid"):
        lease["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": md["name"], "uid": md["uid"]}
        ]
    return lease


def renewed(lease: Obj) -> Obj:
    """A copy of `lease` with renewTime now (for an update against its resourceVersion)."""
    return {**lease, "spec": {**(lease.get("spec") or {}), "renewTime": meta.now_micro()}}
