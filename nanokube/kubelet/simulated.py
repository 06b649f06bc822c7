"""Simulated nodes: many kubelets in one task group, their pods on the simulated runtime.

`nanokube server --simulated-nodes N` registers N Nodes (`sim-0001` ...) that
behave like kubelets to the control plane: each renews its Lease in
`kube-node-lease` every 10 s, re-posts its status when the Ready condition
is not True (after a stop, or after the node lifecycle controller marked it
Unknown), when its pod network comes up (NetworkUnavailable is True until the
node IPAM controller gives it a podCIDR, so no pod is scheduled to a node that
cannot give it an IP) and every 5 minutes otherwise, and runs the pods bound to it through
the timelines of `simulated_pods` (delays, exits, restarts, back-off: see
there for the `sim.nanokube.io/*` annotations a pod may carry).

Built to hold 1,000 nodes and 10,000 pods on two cores, so nothing is per node:

- one pod informer for all nodes, indexed by `spec.nodeName`, and one node informer;
- one heartbeat task: the nodes are split in one bucket per second of the renew
  interval, and each second one bucket renews its Leases together;
- one work queue of pod keys with `concurrency` workers; a pod is looked at when
  the informer reports a change or when its timeline says something is due (a
  timer on the queue), never by polling;
- every API write (Lease, Node status, pod status, pod delete) holds a slot of
  one semaphore of `concurrency` slots.

Stopping a node (its kubelet "crashes": the Lease lapses, the status freezes,
its pods are left as they are) is an annotation on the Node, so `kubectl`
can do it as well as `SimulatedNodes.stop(name)`:

    kubectl annotate node sim-0001 sim.nanokube.io/stopped=true
    kubectl annotate node sim-0001 sim.nanokube.io/stopped-        # start again

A deleted simulated Node stays unregistered until `start(name)`. Pods being
deleted (a `deletionTimestamp`, set when the server deletes a pod bound to a
node gracefully) are stopped at once and removed with grace period 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import LEASE
from nanokube.client.cache import by_node_name, key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.client.workqueue import WorkQueue, run_workers
from nanokube.kubelet import nodestatus, simulated_pods
from nanokube.kubelet.simulated_pods import PodRun, usage

log = logging.getLogger(__name__)

Obj = dict[str, Any]

STOPPED_ANNOTATION = "sim.nanokube.io/stopped"
NODE_INDEX = "nodeName"
INSTANCE_TYPE = "simulated"

__all__ = [
    "NODE_INDEX",
    "STOPPED_ANNOTATION",
    "SimulatedNodeOptions",
    "SimulatedNodes",
    "run_simulated_nodes",
    "usage",
]


@dataclass
class SimulatedNodeOptions:
    """How many nodes, what they look like, and how fast their pods and leases move."""

    count: int = 0
    name_prefix: str = "sim"
    cpu: str = "4"
    memory: str = "16Gi"
    pods: str = "110"
    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c")
    internal_ip_range: str = "172.30.0.0/16"  # the nodes' fake InternalIPs
    start_delay: float = 0.0  # seconds a pod spends in ContainerCreating
    backoff_base: float = 10.0  # CrashLoopBackOff: first restart delay, doubling ...
    backoff_max: float = 300.0  # ... up to this
    lease_duration: int = nodestatus.LEASE_DURATION_SECONDS
    renew_interval: float = nodestatus.LEASE_RENEW_SECONDS
    status_report_interval: float = nodestatus.STATUS_REPORT_SECONDS
    concurrency: int = 16  # API writes in flight, and pod workers


@dataclass
class SimNode:
    """One simulated kubelet's state; the API holds the rest."""

    name: str
    index: int
    zone: str
    internal_ip: str
    stopped: bool = False
    registered: bool = False
    deleted: bool = False  # its Node was deleted: no re-registration until `start`
    uid: str = ""
    lease: Obj | None = None  # the last Lease written: renewed against its resourceVersion
    status_posted: float = 0.0  # monotonic time of the last status post
    status_rv: int = 0  # resourceVersion it wrote: an older cached Node is stale
    applied_rv: int = 0  # resourceVersion of the Node whose stop annotation was applied
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    _next_ip: int = 2  # .0 is the network, .1 the bridge (upstream CNI's gateway)
    _free_ips: list[int] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.registered and not self.stopped

    def set_cidr(self, cidr: str) -> None:
        self.cidr = ipaddress.ip_network(cidr, strict=False)
        self._next_ip, self._free_ips = 2, []

    def allocate_ip(self) -> str | None:
        """A free pod IP of the node's podCIDR; None before IPAM gave one, or when full."""
        if self.cidr is None:
            return None
        if self._free_ips:
            offset = self._free_ips.pop()
        elif self._next_ip < self.cidr.num_addresses - 1:
            offset, self._next_ip = self._next_ip, self._next_ip + 1
        else:
            return None
        return str(self.cidr.network_address + offset)

    def release_ip(self, ip: str) -> None:
        if self.cidr is None or ip == self.internal_ip:
            return
        address = ipaddress.ip_address(ip)
        if address in self.cidr:
            self._free_ips.append(int(address) - int(self.cidr.network_address))


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class SimulatedNodes:
    """N simulated kubelets sharing informers, one heartbeat task and one pod queue."""

    def __init__(
        self,
        client: Client,
        options: SimulatedNodeOptions,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self._own_informers = informers is None
        self.informers = informers or SharedInformerFactory(client)
        self.node_informer = self.informers.informer(NODE)
        self.pod_informer = self.informers.informer(POD, indexers={NODE_INDEX: by_node_name})
        network = ipaddress.ip_network(options.internal_ip_range, strict=False)
        zones = options.zones or ("zone-a",)
        # Every simulated node, by name; fixed at construction.
        self.nodes: dict[str, SimNode] = {}
        for i in range(options.count):
            name = f"{options.name_prefix}-{i + 1:04d}"
            ip = str(network.network_address + i + 1)
            self.nodes[name] = SimNode(name, i, zones[i % len(zones)], ip)
        # The pods on the simulated runtime, by pod key.
        self.runs: dict[str, PodRun] = {}
        self.queue: WorkQueue[str] = WorkQueue("simulated-pods")
        self._writes = asyncio.Semaphore(max(options.concurrency, 1))
        self._registered = asyncio.Event()
        self._kicks: set[asyncio.Task[None]] = set()  # one-shot heartbeats after a start
        self.node_informer.add_event_handler(
            self._on_node, lambda _, new: self._on_node(new), self._on_node_deleted
        )
        self.pod_informer.add_event_handler(
            self._on_pod, lambda _, new: self._on_pod(new), self._on_pod
        )

    # -- public ----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    def is_stopped(self, name: str) -> bool:
        return self.nodes[name].stopped

    async def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until every node has registered once; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._registered.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, name: str) -> None:
        """Stop node `name`'s kubelet: no more Lease renewals, status or pod changes."""
        patch = {"metadata": {"annotations": {STOPPED_ANNOTATION: "true"}}}
        self._on_node(await self.client.patch(NODE, name, patch))

    async def start(self, name: str) -> None:
        """Start node `name`'s kubelet again (registering the Node if it was deleted)."""
        sim = self.nodes[name]
        if not sim.registered:
            sim.stopped = sim.deleted = False
            await self._register(sim)
        patch = {"metadata": {"annotations": {STOPPED_ANNOTATION: None}}}
        self._on_node(await self.client.patch(NODE, name, patch))

    async def run(self) -> None:
        """Register every node, then keep leases and pods going until cancelled."""
        self.informers.start()
        await self.node_informer.wait_for_sync()
        await self.pod_informer.wait_for_sync()
        started = time.perf_counter()
        await self._bounded(self._register(n) for n in self.nodes.values())
        self._registered.set()
        log.info(
            "simulated nodes registered nodes=%d seconds=%.2f",
            len(self.nodes),
            time.perf_counter() - started,
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._heartbeats(), name="simulated-heartbeats")
                group.create_task(
                    run_workers(self.queue, self._sync_pod, max(self.options.concurrency, 1))
                )
        finally:
            self.queue.shutdown()
            for task in list(self._kicks):
                task.cancel()
            if self._own_informers:
                await self.informers.shutdown()

    # -- nodes -----------------------------------------------------------------

    def _description(self, sim: SimNode) -> nodestatus.NodeDescription:
        o = self.options
        return nodestatus.NodeDescription(
            name=sim.name,
            internal_ip=sim.internal_ip,
            cpu=o.cpu,
            memory=o.memory,
            pods=o.pods,
            labels={
                nodestatus.INSTANCE_TYPE_LABEL: INSTANCE_TYPE,
                nodestatus.ZONE_LABEL: sim.zone,
            },
            os_image="nanokube simulated node",
            kernel_version="simulated",
            container_runtime_version="simulated://1",
        )

    async def _register(self, sim: SimNode) -> None:
        """Create the Node (or take over an existing one), then its Lease."""
        existing = self.node_informer.get(sim.name)
        if existing is not None:
            self._on_node(existing)
        if sim.stopped:
            return  # stopped before a restart of the simulator: stays down
        try:
            async with self._writes:
                body = nodestatus.new_node(self._description(sim), sim.cidr is not None)
                created = await self.client.create(NODE, body)
            sim.registered = True
            sim.status_posted, sim.status_rv = time.monotonic(), _rv(created)
            self._on_node(created)
        except errors.AlreadyExists:
            sim.registered = True
            await self._post_status(sim, force=True)
        await self._renew_lease(sim)

    def _on_node(self, node: Obj) -> None:
        md = node.get("metadata") or {}
        sim = self.nodes.get(md.get("name", ""))
        if sim is None:
            return
        sim.uid = md.get("uid", sim.uid)
        rv = _rv(node)
        if rv >= sim.applied_rv:
            sim.applied_rv = rv
            stopped = (md.get("annotations") or {}).get(STOPPED_ANNOTATION) == "true"
            if stopped != sim.stopped:
                sim.stopped = stopped
                log.info("simulated node %s node=%s", "stopped" if stopped else "started", sim.name)
                if not stopped and sim.registered:
                    self._kick(sim)
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and sim.cidr is None:
            sim.set_cidr(cidr)
            if sim.live:
                self._kick(sim)  # the network is up: say so, and start the waiting pods

    def _on_node_deleted(self, node: Obj) -> None:
        sim = self.nodes.get((node.get("metadata") or {}).get("name", ""))
        if sim is not None:
            sim.registered, sim.lease, sim.cidr, sim.applied_rv = False, None, None, 0
            sim.deleted = True

    def _kick(self, sim: SimNode) -> None:
        """A node that starts again heartbeats now and looks at its pods."""
        task = asyncio.get_running_loop().create_task(self._heartbeat(sim))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)
        self._enqueue_node_pods(sim.name)

    def _enqueue_node_pods(self, node: str) -> None:
        for key in self.pod_informer.cache.index_keys(NODE_INDEX, node):
            self.queue.add(key)

    async def _heartbeats(self) -> None:
        """Renew one bucket of nodes per second, so each node renews once per interval."""
        interval = self.options.renew_interval
        buckets = max(1, int(interval))
        groups: list[list[SimNode]] = [[] for _ in range(buckets)]
        for sim in self.nodes.values():
            groups[sim.index % buckets].append(sim)
        loop = asyncio.get_running_loop()
        tick, due, i = interval / buckets, loop.time(), 0
        while True:
            due += tick
            await asyncio.sleep(max(due - loop.time(), 0.0))
            due = max(due, loop.time() - tick)  # after a stall, do not burst to catch up
            await self._bounded(self._heartbeat(s) for s in groups[i] if not s.stopped)
            i = (i + 1) % buckets

    async def _heartbeat(self, sim: SimNode) -> None:
        if not sim.registered and not sim.deleted and not sim.stopped:
            await self._register(sim)  # the first attempt failed: try again
            return
        if not sim.live:
            return
        await self._renew_lease(sim)
        node = self.node_informer.get(sim.name)
        if node is None or _rv(node) < sim.status_rv:
            return  # gone, or the cache has not seen our last post yet
        due = time.monotonic() - sim.status_posted >= self.options.status_report_interval
        changed = not nodestatus.is_ready(node) or (
            nodestatus.network_ready(node) != (sim.cidr is not None)
        )
        if due or changed:
            await self._post_status(sim)

    async def _renew_lease(self, sim: SimNode) -> None:
        async with self._writes:
            if sim.lease is not None:
                try:
                    sim.lease = await self.client.update(LEASE, nodestatus.renewed(sim.lease))
                    return
                except errors.Conflict:
                    current = await self.client.get(LEASE, sim.name, nodestatus.LEASE_NAMESPACE)
                    sim.lease = await self.client.update(LEASE, nodestatus.renewed(current))
                    return
                except errors.NotFound:
                    sim.lease = None
            node = {"metadata": {"name": sim.name, "uid": sim.uid}}
            try:
                sim.lease = await self.client.create(LEASE, nodestatus.new_lease(node))
            except errors.AlreadyExists:
                current = await self.client.get(LEASE, sim.name, nodestatus.LEASE_NAMESPACE)
                sim.lease = await self.client.update(LEASE, nodestatus.renewed(current))

    async def _post_status(self, sim: SimNode, force: bool = False) -> None:
        """Healthy conditions with a fresh heartbeat, over the Node as the API has it."""
        node = None if force else self.node_informer.get(sim.name)
        for attempt in range(2):
            if node is None:
                node = await self.client.get(NODE, sim.name)
            status = dict(node.get("status") or {})
            status["conditions"] = nodestatus.healthy_conditions(
                status.get("conditions"), network_ready=sim.cidr is not None
            )
            try:
                async with self._writes:
                    updated = await self.client.update(
                        NODE, {**node, "status": status}, subresource="status"
                    )
            except errors.Conflict:
                if attempt:
                    raise
                node = None
                continue
            sim.status_posted, sim.status_rv = time.monotonic(), _rv(updated)
            self._on_node(updated)
            return

    # -- pods ------------------------------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self.nodes:
            self.queue.add(key_of(pod))

    def _release(self, run: PodRun, node: str) -> None:
        sim = self.nodes.get(node)
        if sim is not None and run.ip:
            sim.release_ip(run.ip)
        run.ip_released = True

    async def _sync_pod(self, key: str) -> None:
        """Drive one pod's status to where its timeline stands now."""
        pod = self.pod_informer.cache.get(key)
        run = self.runs.get(key)
        node_name = (pod.get("spec") or {}).get("nodeName", "") if pod else ""
        sim = self.nodes.get(node_name)
        md = (pod or {}).get("metadata") or {}
        if run is not None and (pod is None or run.uid != md.get("uid")):
            del self.runs[key]
            if not run.ip_released:
                self._release(run, run.node)
            run = None
        if pod is None or sim is None or not sim.live:
            return  # gone, not ours, or its kubelet is down
        if md.get("deletionTimestamp"):
            await self._remove(key, pod, run)
            return
        if run is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # finished before this simulator saw it
            host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
            ip = sim.internal_ip if host_network else sim.allocate_ip()
            if ip is None:
                return  # no podCIDR yet: the node's update re-queues its pods
            run = simulated_pods.new_run(pod, ip, time.time(), self.options.start_delay)
            run.node = sim.name
            self.runs[key] = run
        now = time.time()
        due = simulated_pods.advance(run, now, self.options.backoff_base, self.options.backoff_max)
        status = simulated_pods.pod_status(pod, run, sim.internal_ip)
        if status != pod.get("status"):
            try:
                async with self._writes:
                    await self.client.update(POD, {**pod, "status": status}, subresource="status")
            except errors.NotFound:
                return
            except errors.Conflict:
                # Someone else wrote the pod (an eviction, a controller's condition): its
                # event brings the new version back to this queue.
                log.debug("pod status conflict pod=%s", key)
                return
        if run.terminal and not run.ip_released:
            self._release(run, sim.name)  # the sandbox is gone; the status keeps the IP
        if due is not None:
            self.queue.add_after(key, max(due - time.time(), 0.0))

    async def _remove(self, key: str, pod: Obj, run: PodRun | None) -> None:
        """Stop a pod being deleted and confirm the deletion (grace period 0)."""
        if run is not None:
            del self.runs[key]
            if not run.ip_released:
                self._release(run, run.node)
        md = pod["metadata"]
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            async with self._writes:
                await self.client.delete(
                    POD,
                    md["name"],
                    md.get("namespace", ""),
                    grace_period_seconds=0,
                    preconditions={"uid": md.get("uid", "")},
                )

    # -- helpers ---------------------------------------------------------------

    async def _bounded(self, calls: Iterable[Awaitable[None]]) -> None:
        """Await `calls` together; a failure is logged, not raised (the next round retries)."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("simulated node write failed error=%r", result)


async def run_simulated_nodes(
    client: Client,
    options: SimulatedNodeOptions,
    stop: asyncio.Event,
    informers: SharedInformerFactory | None = None,
) -> SimulatedNodes:
    """Run `options.count` simulated nodes until `stop` is set (the CLI's wiring)."""
    nodes = SimulatedNodes(client, options, informers)
    task = asyncio.create_task(nodes.run(), name="simulated-nodes")
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return nodes
