"""The node lifecycle controller: node health, condition taints and NoExecute evictions.

Upstream's `pkg/controller/nodelifecycle` with its taint manager
(`pkg/controller/tainteviction`), reconciled per Node:

1. Health. A kubelet proves it is alive by renewing its Lease in
   `kube-node-lease` (and by posting status). The controller notes, on its own
   clock, when it last saw either change (upstream's `probeTimestamp`: remote
   clocks are not trusted). A node silent for longer than
   `node_monitor_grace_period` (40 s; `node_startup_grace_period`, 60 s, for a
   node that never posted a Ready condition) gets its Ready, MemoryPressure,
   DiskPressure and PIDPressure conditions set to Unknown, reason
   NodeStatusUnknown, message "Kubelet stopped posting node status.", and the
   Ready condition of its pods set to False. A monitor task looks for silent
   nodes every `node_monitor_period` (5 s).
2. Taints (TaintNodesByCondition and the NoExecute tainting pass). Ready=False
   gives `node.kubernetes.io/not-ready`, Ready=Unknown
   `node.kubernetes.io/unreachable`, each with effects NoSchedule and
   NoExecute; MemoryPressure, DiskPressure, PIDPressure and NetworkUnavailable
   True give their NoSchedule taints, `spec.unschedulable` the
   `node.kubernetes.io/unschedulable` one. Taints the controller does not
   manage are left alone; managed ones are removed when the condition clears,
   so a node that comes back loses them.
3. Evictions. A pod on a node with NoExecute taints that it does not tolerate
   is deleted at once; one that tolerates them all is deleted when the
   shortest matching `tolerationSeconds` has passed since the taint was added
   (`timeAdded`), never if no matching toleration sets a limit. Pods normally
   carry 300 s tolerations for not-ready and unreachable, added on creation by
   the DefaultTolerationSeconds admission (`nanokube.apiserver.tolerations`).
   An evicted pod first gets the DisruptionTarget condition, as upstream.

Events: NodeNotReady and NodeReady on the Node when its Ready condition
changes, TaintManagerEviction on each evicted pod. Not implemented: upstream's
zone disruption modes (slowing or stopping evictions when a large part of a
zone is unhealthy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import LEASE
from nanokube.api.scheduling import tolerates
from nanokube.client.cache import by_node_name, key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import STRATEGIC_PATCH, Client
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
NODE_INDEX = "nodeName"  # the pod index the simulated nodes use too: one index, shared

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# (condition, status) -> the NoSchedule taint it brings (upstream's nodeConditionToTaintKeyStatusMap).
CONDITION_TAINTS = {
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
MANAGED_TAINTS = {*CONDITION_TAINTS.values(), UNSCHEDULABLE}
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class NodeLifecycleOptions:
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    node_monitor_period: float = 5.0


def toleration_seconds(tolerations: list[Obj], taints: list[Obj]) -> float | None:
    """How long a pod may stay with `taints`: 0 if one is not tolerated, None for ever."""
    used = []
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        used += matching
    limits = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
    return max(float(min(limits)), 0.0) if limits else None


def ready_status(node: Obj) -> str:
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return str(cond.get("status") or "Unknown")
    return ""


def desired_taints(node: Obj) -> list[tuple[str, str]]:
    """The managed (key, effect) taints the node's conditions call for."""
    statuses = {
        c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or ()
    }
    wanted = [
        (key, "NoSchedule") for (t, s), key in CONDITION_TAINTS.items() if statuses.get(t) == s
    ]
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((UNSCHEDULABLE, "NoSchedule"))
    if statuses.get("Ready") == "False":
        wanted.append((NOT_READY, "NoExecute"))
    elif statuses.get("Ready") == "Unknown":
        wanted.append((UNREACHABLE, "NoExecute"))
    return wanted


def reconcile_taints(node: Obj, now: str) -> list[Obj]:
    """The node's taints with the managed ones as its conditions want them."""
    wanted = desired_taints(node)
    current = list((node.get("spec") or {}).get("taints") or [])
    kept = [
        t
        for t in current
        if t.get("key") not in MANAGED_TAINTS or (t.get("key"), t.get("effect")) in wanted
    ]
    present = {(t.get("key"), t.get("effect")) for t in kept}
    for key, effect in wanted:
        if (key, effect) not in present:
            taint: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now
            kept.append(taint)
    return kept


class NodeLifecycleController(Controller):
    """Marks silent nodes Unknown, taints nodes by condition, evicts from NoExecute nodes."""

    name = "node-lifecycle-controller"
    workers = 4

    def __init__(
        self,
        client: Client,
        informers: SharedInformerFactory,
        options: NodeLifecycleOptions | None = None,
    ) -> None:
        super().__init__(client, informers)
        self.options = options or NodeLifecycleOptions()
        self.nodes = self.watch(informers.informer(NODE))
        self.leases = self.watch(informers.informer(LEASE, namespace=LEASE_NAMESPACE))
        self.pods = self.watch(informers.informer(POD, indexers={NODE_INDEX: by_node_name}))
        # node -> monotonic time the controller last saw a heartbeat (upstream's probeTimestamp).
        self._probed: dict[str, float] = {}
        # node -> (lease renewTime, Ready lastHeartbeatTime) as last seen, to notice changes.
        self._beats: dict[str, tuple[str, str]] = {}
        # node -> Ready status last reconciled, for the NodeReady/NodeNotReady events.
        self._ready: dict[str, str] = {}
        # (node, taint key, effect) -> when first seen, for NoExecute taints without timeAdded.
        self._taint_seen: dict[tuple[str, str, str], float] = {}
        self.nodes.add_event_handler(self._on_node, lambda _, new: self._on_node(new), self._gone)
        self.leases.add_event_handler(self._on_lease, lambda _, new: self._on_lease(new))
        self.pods.add_event_handler(self._on_pod, lambda _, new: self._on_pod(new))

    # -- heartbeats ------------------------------------------------------------

    def _beat(self, name: str, lease: str | None = None, status: str | None = None) -> None:
        old_lease, old_status = self._beats.get(name, ("", ""))
        new = (old_lease if lease is None else lease, old_status if status is None else status)
        if new != (old_lease, old_status) or name not in self._probed:
            self._probed[name] = time.monotonic()
        self._beats[name] = new

    def _on_node(self, node: Obj) -> None:
        heartbeat = ""
        for cond in (node.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "Ready":
                heartbeat = str(cond.get("lastHeartbeatTime") or "")
        self._beat(key_of(node), status=heartbeat)
        self.enqueue(node)

    def _on_lease(self, lease: Obj) -> None:
        self._beat(meta.name(lease), lease=str((lease.get("spec") or {}).get("renewTime") or ""))

    def _gone(self, node: Obj) -> None:
        name = key_of(node)
        for table in (self._probed, self._beats, self._ready):
            table.pop(name, None)
        for k in [k for k in self._taint_seen if k[0] == name]:
            del self._taint_seen[k]

    def _on_pod(self, pod: Obj) -> None:
        """A pod on an unhealthy or NoExecute-tainted node may need marking or evicting."""
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        noexecute = any(t.get("effect") == "NoExecute" for t in node["spec"].get("taints") or ())
        if noexecute or ready_status(node) != "True":
            self.enqueue(node)

    def _silent(self, node: Obj) -> bool:
        """True when no heartbeat was seen for longer than the grace period."""
        name = key_of(node)
        probed = self._probed.setdefault(name, time.monotonic())
        grace = self.options.node_monitor_grace_period
        if not ready_status(node):
            grace = max(grace, self.options.node_startup_grace_period)
        return time.monotonic() - probed > grace

    async def run(self) -> None:
        monitor = asyncio.create_task(self._monitor(), name=f"{self.name}-monitor")
        try:
            await super().run()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    async def _monitor(self) -> None:
        """Every monitor period, queue the nodes that fell silent and are not marked yet."""
        for informer in self.watched:
            await informer.wait_for_sync()
        while True:
            await asyncio.sleep(self.options.node_monitor_period)
            for node in self.nodes.list():
                if ready_status(node) != "Unknown" and self._silent(node):
                    self.enqueue(node)

    # -- reconcile -------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        if ready_status(node) != "Unknown" and self._silent(node):
            node = await self._mark_unknown(node)
        status = ready_status(node)
        before = self._ready.get(key)
        if before is not None and before != status:
            if status == "True":
                self.events.normal(node, "NodeReady", f"Node {key} status is now: NodeReady")
            elif before == "True":
                self.events.normal(node, "NodeNotReady", f"Node {key} status is now: NodeNotReady")
        self._ready[key] = status
        if status != "True":
            await self._mark_pods_not_ready(key)
        taints = reconcile_taints(node, meta.now_rfc3339())
        if taints != ((node.get("spec") or {}).get("taints") or []):
            node = await self.client.update(
                NODE, {**node, "spec": {**node["spec"], "taints": taints}}
            )
        await self._evict(node)

    async def _mark_unknown(self, node: Obj) -> Obj:
        """Every kubelet-owned condition to Unknown: the kubelet stopped posting."""
        now = meta.now_rfc3339()
        conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or ()]
        present = {c.get("type") for c in conditions}
        never = "Ready" not in present
        for type_ in UNKNOWN_CONDITIONS:
            if type_ not in present:
                conditions.append({"type": type_, "lastHeartbeatTime": None})
        for cond in conditions:
            if cond.get("type") not in UNKNOWN_CONDITIONS:
                continue
            if cond.get("status") != "Unknown":
                cond["lastTransitionTime"] = now
            cond["status"] = "Unknown"
            if never or not cond.get("lastHeartbeatTime"):
                cond["reason"] = "NodeStatusNeverUpdated"
                cond["message"] = "Kubelet never posted node status."
            else:
                cond["reason"] = "NodeStatusUnknown"
                cond["message"] = "Kubelet stopped posting node status."
        log.info("node stopped posting status node=%s", key_of(node))
        status = {**(node.get("status") or {}), "conditions": conditions}
        updated: Obj = await self.client.update(
            NODE, {**node, "status": status}, subresource="status"
        )
        return updated

    async def _mark_pods_not_ready(self, node: str) -> None:
        """Upstream's `MarkPodsNotReady`: the Ready condition of the node's pods to False."""
        now = meta.now_rfc3339()
        for pod in self.pods.by_index(NODE_INDEX, node):
            status = pod.get("status") or {}
            conditions = [dict(c) for c in status.get("conditions") or ()]
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") != "True":
                continue
            ready.update(status="False", lastTransitionTime=now)
            with contextlib.suppress(errors.NotFound):
                await self.client.update(
                    POD,
                    {**pod, "status": {**status, "conditions": conditions}},
                    subresource="status",
                )

    async def _evict(self, node: Obj) -> None:
        """Delete the pods whose tolerations of the NoExecute taints ran out; re-check later."""
        name = key_of(node)
        taints = [
            t
            for t in (node.get("spec") or {}).get("taints") or ()
            if t.get("effect") == "NoExecute"
        ]
        if not taints:
            return
        now = time.time()
        since = max(self._taint_time(name, t, now) for t in taints)
        next_due: float | None = None
        for pod in self.pods.by_index(NODE_INDEX, name):
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            seconds = toleration_seconds((pod.get("spec") or {}).get("tolerations") or [], taints)
            if seconds is None:
                continue
            due = since + seconds
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            await self._delete_pod(pod)
        if next_due is not None:
            self.enqueue_after(node, next_due - now)

    def _taint_time(self, node: str, taint: Obj, now: float) -> float:
        if taint.get("timeAdded"):
            with contextlib.suppress(ValueError):
                return meta.parse_time(taint["timeAdded"])
        return self._taint_seen.setdefault((node, taint.get("key", ""), taint["effect"]), now)

    async def _delete_pod(self, pod: Obj) -> None:
        ns, name = meta.namespace(pod), meta.name(pod)
        self.events.normal(pod, "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": meta.now_rfc3339(),
        }
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.client.patch(
                POD,
                name,
                {"status": {"conditions": [condition]}},
                ns,
                patch_type=STRATEGIC_PATCH,
                subresource="status",
            )
        log.info("evicting pod pod=%s/%s node=%s", ns, name, pod["spec"].get("nodeName"))
        with contextlib.suppress(errors.NotFound):
            await self.client.delete(POD, name, ns)
