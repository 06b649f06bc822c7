"""The real node agent's Node: registration, status, Lease and node events.

Upstream's kubelet (`pkg/kubelet/kubelet_node_status.go`, `nodestatus/setters.go`,
`nodelease`), for a machine nanokube runs pods on:

- register: create the Node (name = `--node-name` or the hostname) with the
  machine's capacity and allocatable (`node_machine`), InternalIP and Hostname
  addresses, `nodeInfo` (kernel, OS image, `runc://<version>`, kubelet
  version, architecture, machine/boot ids), the streaming server's port as
  `daemonEndpoints.kubeletEndpoint.Port`, labels and taints. An existing Node
  of that name is taken over (labels merged, status replaced), as upstream
  does when a kubelet restarts.
- status: every `status_seconds` (10 s, `nodeStatusUpdateFrequency`) the
  status is computed again: conditions Ready, MemoryPressure, DiskPressure,
  PIDPressure with upstream's reasons and messages, from the eviction
  thresholds of `node_machine.pressure`. It is written only when something
  other than heartbeat times changed, or when `report_seconds` (5 min,
  upstream's `nodeStatusReportFrequency`) have passed since the last write;
  the Lease is what proves liveness in between.
- Ready is False (`KubeletNotReady`) while a readiness check says why: no
  `spec.podCIDR` yet (the CNI config needs it), or what the runtime reports.
- lease: `kube-node-lease/<name>`, owned by the Node, renewed every 10 s.
- events as upstream: `Starting`, `NodeAllocatableEnforced`, and `Node<X>`
  for each condition that changes (`NodeReady`, `NodeHasSufficientMemory`...).

The shapes of a Node and Lease come from `nodestatus`, shared with the
simulated nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import LEASE
from nanokube.client.events import EventRecorder
from nanokube.client.interface import Client
from nanokube.kubelet import node_machine, nodestatus

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ReadinessCheck = Callable[[], str | None]
"""Returns why the node is not ready, or None when this part is ready."""

KUBELET_VERSION = "v1.33.1-nanokube"
POD_CIDR_NOT_READY = (
    "container runtime network not ready: NetworkReady=false "
    "reason:NetworkPluginNotReady message:no podCIDR assigned to the node yet"
)

# (type, (status, reason, message) when fine, (status, reason, message) when not)
_PRESSURE = {
    "MemoryPressure": (
        ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ),
    "DiskPressure": (
        ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("True", "KubeletHasDiskPressure", "kubelet has disk pressure"),
    ),
    "PIDPressure": (
        ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    ),
}
_FIELD = {"MemoryPressure": "memory", "DiskPressure": "disk", "PIDPressure": "pid"}
# The event reasons upstream records when a condition changes to each status.
_EVENTS = {
    ("MemoryPressure", "False"): "NodeHasSufficientMemory",
    ("MemoryPressure", "True"): "NodeHasInsufficientMemory",
    ("DiskPressure", "False"): "NodeHasNoDiskPressure",
    ("DiskPressure", "True"): "NodeHasDiskPressure",
    ("PIDPressure", "False"): "NodeHasSufficientPID",
    ("PIDPressure", "True"): "NodeHasInsufficientPID",
    ("Ready", "True"): "NodeReady",
    ("Ready", "False"): "NodeNotReady",
}


@dataclass
class NodeConfig:
    """What this node registers as and how often it reports."""

    name: str
    data_dir: Path
    internal_ip: str = ""
    kubelet_port: int = 10250
    runtime_version: str = "runc://unknown"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    max_pods: int = 110
    status_seconds: float = 10.0
    report_seconds: float = nodestatus.STATUS_REPORT_SECONDS
    lease_seconds: float = nodestatus.LEASE_RENEW_SECONDS
    lease_duration: int = nodestatus.LEASE_DURATION_SECONDS


def conditions(
    existing: list[Obj] | None,
    pressure: node_machine.Pressure,
    not_ready: str | None,
    network_ready: bool,
    now: str | None = None,
) -> list[Obj]:
    """The kubelet's conditions, heartbeat `now`; transition times kept when unchanged."""
    now = now or meta.now_rfc3339()
    before = {c.get("type"): c for c in existing or ()}
    rows = []
    for type_, (fine, bad) in _PRESSURE.items():
        rows.append((type_, *(bad if getattr(pressure, _FIELD[type_]) else fine)))
    if not_ready:
        rows.append(("Ready", "False", "KubeletNotReady", not_ready))
    else:
        rows.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    out = []
    for type_, status, reason, message in rows:
        old = before.get(type_) or {}
        same = old.get("status") == status
        out.append(
            {
                "type": type_,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": (old.get("lastTransitionTime") if same else None) or now,
                "reason": reason,
                "message": message,
            }
        )
    owned = {r[0] for r in rows}
    if network_ready:
        # The agent wires its own pod network (one bridge on its podCIDR).
        old = before.get("NetworkUnavailable") or {}
        if old.get("status") == "False":
            out.append(old)
        else:
            out.append(
                {
                    "type": "NetworkUnavailable",
                    "status": "False",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                    "reason": "RouteCreated",
                    "message": "nanokube agent configured the pod network",
                }
            )
        owned.add("NetworkUnavailable")
    # Conditions others own (a node problem detector's) stay as they are.
    out += [c for t, c in before.items() if t not in owned]
    return out


def _without_heartbeats(status: Obj) -> Obj:
    conds = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions") or ()
    ]
    return {**status, "conditions": conds}


class NodeStatusManager:
    """Registers this node and keeps its status and Lease current until cancelled."""

    def __init__(
        self,
        client: Client,
        config: NodeConfig,
        *,
        recorder: EventRecorder | None = None,
        readiness: list[ReadinessCheck] | None = None,
        images: Callable[[], list[Obj]] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.recorder = recorder
        # Each check names a reason the node is not Ready (runtime, network), or None.
        self.readiness = list(readiness or ())
        # The node's images for `status.images` (the image store), or nothing.
        self.images = images
        self.capacity = node_machine.capacity(config.data_dir, config.max_pods)
        self.internal_ip = config.internal_ip or node_machine.internal_ip()
        # The Node as last written or read; None before registration.
        self.node: Obj | None = None
        self.lease: Obj | None = None
        self.registered = asyncio.Event()
        self._posted_at = 0.0  # monotonic time of the last status write
        self._boot_id = node_machine.boot_id() or meta.new_uid()

    # -- the Node object -----------------------------------------------------------

    def allocatable(self) -> dict[str, str]:
        return self.capacity.allocatable()

    @property
    def pod_cidr(self) -> str:
        return str(((self.node or {}).get("spec") or {}).get("podCIDR") or "")

    def not_ready_reason(self) -> str | None:
        if not self.pod_cidr:
            return POD_CIDR_NOT_READY
        for check in self.readiness:
            reason = check()
            if reason:
                return reason
        return None

    def desired_status(self, current: Obj | None) -> Obj:
        """The status this kubelet reports now, over the Node's current one."""
        status = dict((current or {}).get("status") or {})
        c = self.config
        status.update(
            {
                "capacity": self.capacity.capacity(),
                "allocatable": self.allocatable(),
                "conditions": conditions(
                    status.get("conditions"),
                    node_machine.pressure(c.data_dir),
                    self.not_ready_reason(),
                    network_ready=bool(self.pod_cidr),
                ),
                "addresses": [
                    {"type": "InternalIP", "address": self.internal_ip},
                    {"type": "Hostname", "address": c.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": c.kubelet_port}},
                "nodeInfo": self._node_info(),
            }
        )
        if self.images is not None:
            status["images"] = self.images()
        return status

    def _node_info(self) -> Obj:
        uname = platform.uname()
        machine_id = node_machine.machine_id() or self.config.name
        return {
            "machineID": machine_id,
            "systemUUID": node_machine.system_uuid() or machine_id,
            "bootID": self._boot_id,
            "kernelVersion": uname.release,
            "osImage": node_machine.os_image(),
            "containerRuntimeVersion": self.config.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": node_machine.architecture(),
        }

    def new_node(self) -> Obj:
        c = self.config
        node = nodestatus.new_node(
            nodestatus.NodeDescription(name=c.name, internal_ip=self.internal_ip)
        )
        arch = node_machine.architecture()
        node["metadata"]["labels"].update(
            {nodestatus.ARCH_LABEL: arch, "beta.kubernetes.io/arch": arch, **c.labels}
        )
        if c.taints:
            node["spec"]["taints"] = list(c.taints)
        node["status"] = self.desired_status(None)
        return node

    # -- registration ------------------------------------------------------------------

    async def register(self) -> Obj:
        """Create the Node, or take over the one of this name; then its first Lease."""
        try:
            self.node = await self.client.create(NODE, self.new_node())
            log.info("node registered node=%s ip=%s", self.config.name, self.internal_ip)
        except errors.AlreadyExists:
            existing = await self.client.get(NODE, self.config.name)
            labels = {**(existing["metadata"].get("labels") or {})}
            labels.update(self.new_node()["metadata"]["labels"])
            existing["metadata"]["labels"] = labels
            self.node = await self.client.update(NODE, existing)
            await self.post_status(force=True)
            log.info("node re-registered node=%s", self.config.name)
        self.registered.set()
        self._event("Normal", "Starting", "Starting kubelet.")
        self._event(
            "Normal", "NodeAllocatableEnforced", "Updated Node Allocatable limit across pods"
        )
        for cond in (self.node or {}).get("status", {}).get("conditions") or ():
            self._condition_event(cond)
        await self.renew_lease()
        return self.node or {}

    async def wait_for_pod_cidr(self, poll: float = 0.5) -> str:
        """Wait until node IPAM gives this node `spec.podCIDR` (the CNI config needs it)."""
        await self.registered.wait()
        while not self.pod_cidr:
            await asyncio.sleep(poll)
            with contextlib.suppress(errors.NotFound):
                self.node = await self.client.get(NODE, self.config.name)
        return self.pod_cidr

    # -- status --------------------------------------------------------------------------

    async def post_status(self, force: bool = False) -> bool:
        """Write the status if it changed (or `force`, or the report interval passed)."""
        for attempt in range(3):
            if self.node is None:
                # Read before computing the status: it depends on the Node's spec (podCIDR).
                self.node = await self.client.get(NODE, self.config.name)
            current = self.node
            status = self.desired_status(current)
            due = time.monotonic() - self._posted_at >= self.config.report_seconds
            old = current.get("status") or {}
            if not force and not due and _without_heartbeats(status) == _without_heartbeats(old):
                return False
            try:
                updated = await self.client.update(
                    NODE, {**current, "status": status}, subresource="status"
                )
            except errors.Conflict:
                self.node = None  # someone else wrote it (IPAM, a label): read again
                if attempt == 2:
                    raise
                continue
            self._posted_at = time.monotonic()
            self._report_changes(old, updated.get("status") or {})
            self.node = updated
            return True
        return False

    def _report_changes(self, old: Obj, new: Obj) -> None:
        before = {c.get("type"): c.get("status") for c in old.get("conditions") or ()}
        for cond in new.get("conditions") or ():
            if before.get(cond.get("type")) != cond.get("status"):
                self._condition_event(cond)
                log.info(
                    "node condition changed node=%s type=%s status=%s reason=%s",
                    self.config.name,
                    cond.get("type"),
                    cond.get("status"),
                    cond.get("reason"),
                )

    def _condition_event(self, cond: Obj) -> None:
        reason = _EVENTS.get((cond.get("type", ""), cond.get("status", "")))
        if reason:
            self._event("Normal", reason, f"Node {self.config.name} status is now: {reason}")

    def _event(self, type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        name = self.config.name
        ref = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}}
        self.recorder.record(ref, type_, reason, message)

    # -- lease -----------------------------------------------------------------------------

    async def renew_lease(self) -> None:
        if self.lease is not None:
            try:
                self.lease = await self.client.update(LEASE, nodestatus.renewed(self.lease))
                return
            except errors.Conflict:
                current = await self.client.get(LEASE, self.config.name, nodestatus.LEASE_NAMESPACE)
                self.lease = await self.client.update(LEASE, nodestatus.renewed(current))
                return
            except errors.NotFound:
                self.lease = None
        node = self.node or {"metadata": {"name": self.config.name}}
        try:
            self.lease = await self.client.create(
                LEASE, nodestatus.new_lease(node, self.config.lease_duration)
            )
        except errors.AlreadyExists:
            current = await self.client.get(LEASE, self.config.name, nodestatus.LEASE_NAMESPACE)
            if node["metadata"].get("uid"):
                current["metadata"]["ownerReferences"] = nodestatus.new_lease(node)["metadata"][
                    "ownerReferences"
                ]
            self.lease = await self.client.update(LEASE, nodestatus.renewed(current))

    # -- loops -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Register (retrying), then renew the Lease and post status until cancelled."""
        delay = 0.5
        while True:
            try:
                await self.register()
                break
            except (errors.StatusError, OSError) as e:
                log.warning("node registration failed node=%s error=%s", self.config.name, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(self.config.lease_seconds, self.renew_lease, "lease"))
            group.create_task(self._every(self.config.status_seconds, self._sync_status, "status"))

    async def _sync_status(self) -> None:
        try:
            await self.post_status()
        except errors.NotFound:
            log.warning("node object deleted, registering again node=%s", self.config.name)
            self.node, self.lease = None, None
            await self.register()

    async def _every(self, seconds: float, step: Callable[[], Any], what: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except (errors.StatusError, OSError) as e:
                log.warning("node %s update failed node=%s error=%s", what, self.config.name, e)


def default_labels(name: str) -> dict[str, str]:
    """Labels a real node carries besides nodestatus's (hostname, os, arch)."""
    return {nodestatus.HOSTNAME_LABEL: name, "node.kubernetes.io/instance-type": "nanokube"}
