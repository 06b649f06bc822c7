"""The scheduler's cache: nodes and the pods on them, including pods assumed but not yet bound.

Upstream's `internal/cache`. Informer events keep it current (nodes, assigned
pods, namespaces' labels, pending pods' nominations); the scheduler *assumes*
a pod onto its chosen node the moment it decides, before the binding is
written, so the next cycle already sees that node's resources taken, which
is what lets binding run asynchronously. When the informer then reports the
pod as assigned the assumption is confirmed; when binding fails the scheduler
*forgets* it, giving the resources back.

Everything runs on one event loop and a scheduling cycle never awaits, so the
cycle reads the cache directly: no snapshot copy per cycle (upstream takes
one because its cycle runs beside the informers' goroutines).

The node list used for sampling interleaves zones (upstream's `NodeTree`), so
that scoring only a part of a big cluster still sees every zone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import zip_longest
from typing import Any

from nanokube.scheduler.nodeinfo import ZONE_LABEL, NodeInfo, PodInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class NominatedTotals:
    """Resources that pods nominated to a node (by preemption) hold in reserve there."""

    __slots__ = ("cpu", "memory", "ephemeral", "count")

    def __init__(self) -> None:
        self.cpu = self.memory = self.ephemeral = self.count = 0


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, PodInfo] = {}  # assigned or assumed pods by namespace/name
        self.assumed: set[str] = set()
        # Controller owner uid -> node -> pods of that owner there (default spreading).
        self.owner_counts: dict[str, dict[str, int]] = {}
        self.namespace_labels: dict[str, Mapping[str, str]] = {}
        # Pending pods that preemption nominated to a node: node -> pod key -> pod.
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        # Nodes holding pods with (anti-)affinity terms, so cycles need not visit every node.
        self.affinity_nodes: dict[str, NodeInfo] = {}
        self.anti_affinity_nodes: dict[str, NodeInfo] = {}
        self._list: list[NodeInfo] = []
        self._list_dirty = False
        self.prefer_no_schedule_nodes = 0  # nodes with a PreferNoSchedule taint

    # -- nodes -----------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """The schedulable node set (nodes the cache has seen), zones interleaved."""
        if self._list_dirty:
            zones: dict[str, list[NodeInfo]] = {}
            for ni in self.nodes.values():
                if ni.node is not None:
                    zones.setdefault(ni.labels.get(ZONE_LABEL, ""), []).append(ni)
            self._list = [
                ni for row in zip_longest(*zones.values()) for ni in row if ni is not None
            ]
            self.prefer_no_schedule_nodes = sum(
                1
                for ni in self._list
                if any(t.get("effect") == "PreferNoSchedule" for t in ni.taints)
            )
            self._list_dirty = False
        return self._list

    def add_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
        ni.set_node(node)
        self._list_dirty = True
        return ni

    update_node = add_node

    def refresh_node(self, node: Obj) -> None:
        """A node update that changes nothing scheduling reads (a heartbeat): keep the newest dict."""
        ni = self.nodes.get(node["metadata"]["name"])
        if ni is not None and ni.node is not None:
            ni.node = node

    def remove_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            return
        if ni.pods:
            ni.node = None  # its pods are still gone from nowhere: keep counting them
        else:
            del self.nodes[name]
        self._list_dirty = True

    # -- pods ------------------------------------------------------------------

    def _node_for(self, name: str) -> NodeInfo:
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
        return ni

    def _place(self, pi: PodInfo) -> None:
        ni = self._node_for(pi.node_name)
        ni.add_pod(pi)
        self.pods[pi.key] = pi
        if pi.owner_uid:
            per_node = self.owner_counts.setdefault(pi.owner_uid, {})
            per_node[ni.name] = per_node.get(ni.name, 0) + 1
        if ni.pods_with_affinity:
            self.affinity_nodes[ni.name] = ni
        if ni.pods_with_required_anti_affinity:
            self.anti_affinity_nodes[ni.name] = ni

    def _unplace(self, pi: PodInfo) -> None:
        self.pods.pop(pi.key, None)
        ni = self.nodes.get(pi.node_name)
        if ni is None or not ni.remove_pod(pi):
            return
        if pi.owner_uid:
            per_node = self.owner_counts.get(pi.owner_uid)
            if per_node is not None:
                left = per_node.get(ni.name, 0) - 1
                if left > 0:
                    per_node[ni.name] = left
                else:
                    per_node.pop(ni.name, None)
                    if not per_node:
                        del self.owner_counts[pi.owner_uid]
        if not ni.pods_with_affinity:
            self.affinity_nodes.pop(ni.name, None)
        if not ni.pods_with_required_anti_affinity:
            self.anti_affinity_nodes.pop(ni.name, None)
        if ni.node is None and not ni.pods:
            del self.nodes[ni.name]

    def assume(self, pi: PodInfo, node_name: str) -> None:
        """Count the pod on `node_name` now, before its binding is written."""
        self.clear_nominated(pi.key)
        pi.node_name = node_name
        self._place(pi)
        self.assumed.add(pi.key)

    def forget(self, pi: PodInfo) -> None:
        """Undo `assume` (the binding failed)."""
        if pi.key in self.assumed:
            self.assumed.discard(pi.key)
            current = self.pods.get(pi.key)
            if current is not None:
                self._unplace(current)
        pi.node_name = ""

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def add_pod(self, pod: Obj) -> None:
        """An assigned pod appeared, or changed: count it on its node."""
        md = pod.get("metadata") or {}
        key = f"{md.get('namespace', '')}/{md.get('name', '')}"
        current = self.pods.get(key)
        if (
            current is not None
            and key in self.assumed
            and current.node_name == (pod.get("spec") or {}).get("nodeName")
        ):
            # The binding we wrote came back: the assumption is confirmed as it stands.
            self.assumed.discard(key)
            current.pod = pod
            return
        if current is not None:
            self._unplace(current)
        self.assumed.discard(key)
        self._place(PodInfo(pod))

    def refresh_pod(self, pod: Obj) -> None:
        """An assigned pod update that changes nothing the cache counts: keep the newest dict."""
        md = pod.get("metadata") or {}
        current = self.pods.get(f"{md.get('namespace', '')}/{md.get('name', '')}")
        if current is None:
            self.add_pod(pod)
        else:
            current.pod = pod

    def remove_pod(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        key = f"{md.get('namespace', '')}/{md.get('name', '')}"
        current = self.pods.get(key)
        if current is not None:
            self.assumed.discard(key)
            self._unplace(current)

    # -- nominations (preemption) -----------------------------------------------

    def set_nominated(self, pi: PodInfo, node_name: str) -> None:
        self.clear_nominated(pi.key)
        if node_name:
            pi.nominated_node = node_name
            self.nominated.setdefault(node_name, {})[pi.key] = pi

    def clear_nominated(self, key: str) -> None:
        for node_name, pods in list(self.nominated.items()):
            if pods.pop(key, None) is not None and not pods:
                del self.nominated[node_name]

    def nominated_reservations(self, pi: PodInfo) -> dict[str, NominatedTotals]:
        """Per node, what nominated pods of at least `pi`'s priority (other than `pi`) hold."""
        out: dict[str, NominatedTotals] = {}
        for node_name, pods in self.nominated.items():
            for other in pods.values():
                if other.key == pi.key or other.priority < pi.priority:
                    continue
                t = out.get(node_name)
                if t is None:
                    t = out[node_name] = NominatedTotals()
                t.cpu += other.req.cpu
                t.memory += other.req.memory
                t.ephemeral += other.req.ephemeral
                t.count += 1
        return out
