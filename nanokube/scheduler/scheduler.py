"""The scheduler: informers feed the cache and the queue; one loop schedules, binding is async.

Upstream's `scheduler.go` and `schedule_one.go`. Informers on nodes, pods and
namespaces keep the `Cache` (nodes and assigned pods) and the
`SchedulingQueue` (pending pods this scheduler is responsible for:
`spec.schedulerName` is its name, no `spec.nodeName`, not being deleted)
current. The loop pops a pod, runs one cycle (never awaiting, so the cache
cannot change under it), assumes the pod on the chosen node and starts its
binding as a task: the next pod is scheduled while the binding is written,
as upstream's binding cycle runs in a goroutine.

- Success: POST `pods/binding`; the API server sets `spec.nodeName` and the
  `PodScheduled` condition; a `Scheduled` event says "Successfully assigned
  NS/POD to NODE". A failed binding forgets the assumption and retries the
  pod after its back-off.
- No node fits: preemption may nominate a node and evict lower-priority pods
  (gracefully); either way a `FailedScheduling` warning and the pod's
  `PodScheduled=False` condition (reason `Unschedulable`) carry upstream's
  message, and the pod waits in the queue for the cluster to change.

Cluster changes that may let waiting pods fit (a node added or changed in
what scheduling reads, an assigned pod deleted or finished) move them back
to the active queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nanokube.api import errors, meta
from nanokube.client import kinds
from nanokube.client.events import EventRecorder
from nanokube.client.informer import Informer, SharedInformerFactory
from nanokube.client.interface import STRATEGIC_PATCH, Client
from nanokube.scheduler import preemption
from nanokube.scheduler.cache import Cache
from nanokube.scheduler.framework import Algorithm, FitError
from nanokube.scheduler.nodeinfo import DEFAULT_SCHEDULER, PodInfo, pod_key
from nanokube.scheduler.queue import QueuedPod, SchedulingQueue, ShutDown

log = logging.getLogger(__name__)

Obj = dict[str, Any]

POD = kinds.by_kind("v1", "Pod")
NODE = kinds.by_kind("v1", "Node")
NAMESPACE = kinds.by_kind("v1", "Namespace")
assert POD is not None and NODE is not None and NAMESPACE is not None

YIELD_EVERY = 32  # pods scheduled between yields to the loop (bindings and informers run then)
_TERMINAL = ("Succeeded", "Failed")


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in _TERMINAL


def _scheduling_view(node: Obj) -> tuple[Any, ...]:
    """What of a node scheduling reads (heartbeats change nothing here)."""
    md, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = [c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"]
    return (
        md.get("labels"),
        spec.get("taints"),
        spec.get("unschedulable"),
        status.get("allocatable"),
        ready,
    )


def _pod_view(pod: Obj) -> tuple[Any, ...]:
    """What of an assigned pod the cache reads (status updates by the kubelet change nothing)."""
    md = pod.get("metadata") or {}
    return (
        pod.get("spec"),
        md.get("labels"),
        md.get("ownerReferences"),
        bool(md.get("deletionTimestamp")),
        _terminal(pod),
    )


class Scheduler:
    """`await Scheduler(client).run()` schedules until cancelled or `stop()`ped."""

    def __init__(
        self,
        client: Client,
        name: str = DEFAULT_SCHEDULER,
        *,
        informers: SharedInformerFactory | None = None,
        percentage_of_nodes_to_score: int = 0,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.algorithm = Algorithm(self.cache, percentage_of_nodes_to_score, seed)
        # Informers shared with the controllers are theirs to stop; our own we stop.
        self._own_informers = informers is None
        self.informers = informers or SharedInformerFactory(client)
        self.recorder = EventRecorder(client, name)
        self._pods: Informer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Counters (the figures a benchmark or metrics endpoint reads).
        self.scheduled = 0  # bindings written
        self.unschedulable = 0  # cycles that found no node
        self.bind_errors = 0
        self.preemptions = 0

    # -- informer handlers ---------------------------------------------------------

    def _responsible(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or DEFAULT_SCHEDULER) == self.name and not (
            pod.get("metadata") or {}
        ).get("deletionTimestamp")

    def _on_pod_add(self, pod: Obj) -> None:
        if _assigned(pod):
            if not _terminal(pod):
                self.cache.add_pod(pod)
        elif self._responsible(pod) and not _terminal(pod):
            self.queue.add(pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _assigned(new):
            key = pod_key(new)
            if not _assigned(old):
                self.queue.delete(key)  # bound (by us, or by someone else)
            if _terminal(new):
                if not _terminal(old):
                    self.cache.remove_pod(new)
                    self.queue.move_all_to_active_or_backoff()
            elif not _assigned(old) or _pod_view(old) != _pod_view(new):
                self.cache.add_pod(new)
            else:
                self.cache.refresh_pod(new)
        elif self._responsible(new) and not _terminal(new):
            self.queue.update(new)
        else:
            self.queue.delete(pod_key(new))
            self.cache.clear_nominated(pod_key(new))

    def _on_pod_delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        if _assigned(pod):
            self.cache.remove_pod(pod)
            self.queue.move_all_to_active_or_backoff()
        else:
            self.queue.delete(key)
            self.cache.clear_nominated(key)

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff()

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        if _scheduling_view(old) != _scheduling_view(new):
            self.cache.update_node(new)
            self.queue.move_all_to_active_or_backoff()
        else:
            self.cache.refresh_node(new)

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    def _on_namespace(self, ns: Obj) -> None:
        md = ns.get("metadata") or {}
        self.cache.namespace_labels[md.get("name", "")] = md.get("labels") or {}

    def _on_namespace_delete(self, ns: Obj) -> None:
        self.cache.namespace_labels.pop((ns.get("metadata") or {}).get("name", ""), None)

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Start the informers, wait for their first lists, then schedule until stopped."""
        assert POD is not None and NODE is not None and NAMESPACE is not None
        nodes = self.informers.informer(NODE)
        nodes.add_event_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        namespaces = self.informers.informer(NAMESPACE)
        namespaces.add_event_handler(
            self._on_namespace, lambda old, new: self._on_namespace(new), self._on_namespace_delete
        )
        self._pods = self.informers.informer(POD)
        self._pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.informers.start()
        await self.informers.wait_for_cache_sync()
        flusher = asyncio.create_task(self.queue.run_flushes(), name="scheduler-queue-flush")
        log.info("scheduler started name=%s nodes=%d", self.name, len(self.cache.nodes))
        try:
            await self._loop()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.recorder.close()
            if self._own_informers:
                await self.informers.shutdown()

    async def stop(self) -> None:
        """End `run()` after the current pod (informers passed in keep running)."""
        self._stopping = True
        self.queue.close()

    async def _loop(self) -> None:
        count = 0
        while not self._stopping:
            try:
                qp = await self.queue.pop()
            except ShutDown:
                return
            self.schedule_one(qp)
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one pod -------------------------------------------------------------------

    def _current(self, pi: PodInfo) -> Obj | None:
        """The informer's version of the pod, if it still wants scheduling."""
        pod = self._pods.get(pi.name, pi.namespace) if self._pods is not None else None
        if pod is None or _assigned(pod) or not self._responsible(pod):
            return None
        return pod

    def schedule_one(self, qp: QueuedPod) -> None:
        """One scheduling cycle for a popped pod (synchronous: the cache is stable)."""
        pi = qp.pi
        if self._current(pi) is None or self.cache.is_assumed(pi.key):
            self.queue.done(pi.key)
            return
        try:
            node = self.algorithm.schedule(pi)
        except FitError as e:
            self._unschedulable(qp, e)
            return
        self.cache.assume(pi, node)
        self._spawn(self._bind(qp, node))

    async def _bind(self, qp: QueuedPod, node: str) -> None:
        pi = qp.pi
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pi.name, "namespace": pi.namespace, "uid": pi.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        assert POD is not None
        try:
            await self.client.create_subresource(POD, pi.name, pi.namespace, "binding", binding)
        except Exception as e:  # noqa: BLE001 - any failure: forget, retry after back-off
            self.cache.forget(pi)
            if isinstance(e, errors.NotFound):
                self.queue.done(pi.key)
                return
            self.bind_errors += 1
            log.warning("binding failed pod=%s node=%s error=%s", pi.key, node, e)
            self.recorder.warning(
                pi.pod, "FailedScheduling", f'running Bind plugin "DefaultBinder": {e}'
            )
            self.queue.add_backoff(qp)
            return
        self.queue.done(pi.key)
        self.scheduled += 1
        self.recorder.normal(
            pi.pod, "Scheduled", f"Successfully assigned {pi.namespace}/{pi.name} to {node}"
        )

    def _unschedulable(self, qp: QueuedPod, err: FitError) -> None:
        """Try preemption, then report the failure (event, condition) and park the pod."""
        pi = qp.pi
        self.unschedulable += 1
        post_filter = ""
        nominated = None
        if err.num_all_nodes:
            result = preemption.preempt(self.algorithm, pi, err.statuses)
            if result.candidate is not None:
                nominated = result.candidate.node.name
                self.preemptions += 1
                self.cache.set_nominated(pi, nominated)
                self._spawn(self._evict(pi, nominated, result.candidate.victims))
            else:
                post_filter = f"preemption: {result.message}"
        message = err.message(post_filter)
        log.info("unschedulable pod=%s message=%s", pi.key, message)
        self.recorder.warning(pi.pod, "FailedScheduling", message)
        self._spawn(self._set_unschedulable(pi, message, nominated))
        self.queue.add_unschedulable(qp, message)

    async def _set_unschedulable(self, pi: PodInfo, message: str, nominated: str | None) -> None:
        """`PodScheduled=False` (reason Unschedulable) and the nomination, on the pod's status."""
        status = pi.pod.get("status") or {}
        current: Obj = next(
            (c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"), {}
        )
        same = (
            current.get("status") == "False"
            and current.get("reason") == "Unschedulable"
            and current.get("message") == message
        )
        if same and (nominated is None or status.get("nominatedNodeName") == nominated):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": current.get("lastTransitionTime")
            if current.get("status") == "False"
            else meta.now_rfc3339(),
        }
        patch: Obj = {"status": {"conditions": [condition]}}
        if nominated is not None:
            patch["status"]["nominatedNodeName"] = nominated
        assert POD is not None
        try:
            await self.client.patch(
                POD, pi.name, patch, pi.namespace, patch_type=STRATEGIC_PATCH, subresource="status"
            )
        except errors.StatusError as e:
            log.info("could not update pod status pod=%s error=%s", pi.key, e)

    async def _evict(self, pi: PodInfo, node: str, victims: list[PodInfo]) -> None:
        """Delete the victims gracefully, each with a DisruptionTarget condition and an event."""
        assert POD is not None
        for v in victims:
            condition = {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": f"{self.name}: preempting to accommodate a higher priority pod",
                "lastTransitionTime": meta.now_rfc3339(),
            }
            try:
                await self.client.patch(
                    POD,
                    v.name,
                    {"status": {"conditions": [condition]}},
                    v.namespace,
                    patch_type=STRATEGIC_PATCH,
                    subresource="status",
                )
                await self.client.delete(POD, v.name, v.namespace, preconditions={"uid": v.uid})
            except errors.NotFound:
                continue
            except errors.StatusError as e:
                log.warning("preemption could not delete victim pod=%s error=%s", v.key, e)
                continue
            log.info("preempted victim=%s preemptor=%s node=%s", v.key, pi.key, node)
            self.recorder.normal(
                v.pod, "Preempted", f"Preempted by pod {pi.namespace}/{pi.name} on node {node}"
            )
