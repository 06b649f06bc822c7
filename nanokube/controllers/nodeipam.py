"""The node IPAM controller: a pod CIDR for every Node (upstream's range allocator).

The cluster CIDR (`10.42.0.0/16` by default) is cut into subnets of
`node_mask_size` bits (/24: 254 pod IPs per node). Each Node without
`spec.podCIDR` gets the next free subnet, written to `spec.podCIDR` and
`spec.podCIDRs`; the node's CNI hands out pod IPs from it. Node validation
makes the field write-once, so a CIDR never moves while the node exists.

The allocation is rebuilt from the Nodes themselves, never stored elsewhere:
the informer's handlers mark a node's CIDR used as soon as the node is seen
(the initial list included, before any worker allocates), and free it when
the node is deleted; so a CIDR in use is never handed out twice, also across
restarts. Like upstream's `cidrset`, the search for a free subnet starts after
the last one handed out, so a CIDR just released is not reused at once.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core_node import NODE
from nanokube.client.cache import key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_NODE_MASK_SIZE = 24

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRSet:
    """The subnets of one cluster CIDR, each free or used; upstream's `cidrset.CidrSet`."""

    def __init__(self, cluster_cidr: str, mask_size: int) -> None:
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask_size < self.cluster.prefixlen or mask_size > self.cluster.max_prefixlen:
            raise ValueError(
                f"node mask size /{mask_size} does not fit in the cluster CIDR {self.cluster}"
            )
        self.mask_size = mask_size
        self.size = 1 << (mask_size - self.cluster.prefixlen)
        self._step = 1 << (self.cluster.max_prefixlen - mask_size)
        self._used: set[int] = set()
        self._next = 0  # where the search for a free subnet starts

    def __len__(self) -> int:
        return len(self._used)

    def _index(self, cidr: str) -> int | None:
        """The subnet index of `cidr`, or None if it is not one of this set's subnets."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask_size:
            return None
        if not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - int(self.cluster.network_address)) // self._step

    def _cidr(self, index: int) -> str:
        address = ipaddress.ip_address(int(self.cluster.network_address) + index * self._step)
        return f"{address}/{self.mask_size}"

    def occupy(self, cidr: str) -> bool:
        """Mark `cidr` used (it belongs to a node); False if it is not in this set."""
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self._used.discard(index)

    def allocate(self) -> str | None:
        """The next free subnet after the last one handed out, marked used; None when full."""
        for i in range(self.size):
            index = (self._next + i) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._cidr(index)
        return None


class NodeIPAMController(Controller):
    """Gives every Node a pod CIDR; see the module docstring."""

    name = "node-ipam-controller"
    workers = 1  # allocation is a cheap in-memory step; one worker keeps it simple

    def __init__(
        self,
        client: Client,
        informers: SharedInformerFactory,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        node_mask_size: int = DEFAULT_NODE_MASK_SIZE,
    ) -> None:
        super().__init__(client, informers)
        # The subnets and which are in use: rebuilt from the Nodes by the handlers.
        self.cidrs = CIDRSet(cluster_cidr, node_mask_size)
        # Each node's CIDR as last seen, to release it when the node goes.
        self._assigned: dict[str, str] = {}
        self.nodes = self.watch(informers.informer(NODE))
        self.nodes.add_event_handler(self._on_node, lambda _, new: self._on_node(new), self._gone)

    def _on_node(self, node: Obj) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        name = key_of(node)
        if cidr:
            if self._assigned.get(name) != cidr:
                if not self.cidrs.occupy(cidr):
                    log.info("node CIDR outside the cluster CIDR node=%s cidr=%s", name, cidr)
                self._assigned[name] = cidr
            return
        self.enqueue(node)

    def _gone(self, node: Obj) -> None:
        cidr = self._assigned.pop(key_of(node), None)
        if cidr:
            self.cidrs.release(cidr)
            log.info("released node CIDR node=%s cidr=%s", key_of(node), cidr)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR") or key in self._assigned:
            return
        cidr = self.cidrs.allocate()
        if cidr is None:
            self.events.warning(
                node, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable"
            )
            raise RuntimeError(f"no free pod CIDR in {self.cidrs.cluster} for node {key}")
        self._assigned[key] = cidr
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(NODE, key, patch)
        except errors.NotFound:
            self._gone(node)
            return
        except Exception:
            self._assigned.pop(key, None)
            self.cidrs.release(cidr)
            raise
        log.info("allocated node CIDR node=%s cidr=%s", key, cidr)
