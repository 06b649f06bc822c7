"""The `Kubelet`: pods bound to this node → pod workers → real containers.

Wiring, not policy (that is in the pod worker):

- an informer on pods with ``spec.nodeName=<node>`` dispatches every add/update to
  the pod's `PodWorker` (created on first sight) and a delete to its ``removed()``;
- a relist loop (upstream's PLEG) reads the runtime's containers every
  ``relist_period`` and wakes the workers whose containers changed state, since the
  runtime has no event stream (exits are files written by each container's monitor);
- on start, ``runtime.recover()`` cleans up what a crash interrupted, and once the
  informer has synced, sandboxes of pods the API no longer binds here (orphans) are
  stopped and removed. Containers of pods still bound are *re-adopted*: their workers
  read them back from the runtime (restart counts are the instances' ``attempt``),
  so an agent restart neither restarts nor counts anything;
- `stop()` stops the agent only: containers keep running, as with upstream's kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.resources.core import POD
from nanokube.client.events import EventRecorder
from nanokube.client.informer import Informer
from nanokube.client.interface import Client
from nanokube.kubelet import status as podstatus
from nanokube.kubelet.backoff import DEFAULT_BASE, DEFAULT_CAP, Backoff
from nanokube.kubelet.podworker import PodWorker, WorkerDeps
from nanokube.kubelet.services import ImageService, VolumeManager
from nanokube.runtime.contract import NotFound, Runtime

log = logging.getLogger(__name__)

Obj = dict[str, Any]

__all__ = ["Kubelet", "KubeletConfig"]


@dataclass
class KubeletConfig:
    node_name: str
    host_ip: str
    cluster_dns: list[str] = field(default_factory=list)
    """Cluster DNS server IPs; empty: pods use the node's resolv.conf."""
    cluster_domain: str = "cluster.local"
    node_allocatable: dict[str, str] = field(default_factory=dict)
    """What ``resourceFieldRef`` reads for an unset limit (``cpu``, ``memory``)."""
    relist_period: float = 1.0
    backoff_base: float = DEFAULT_BASE
    backoff_cap: float = DEFAULT_CAP
    config_retry: float = 10.0
    root_dir: str = ""
    """Where the kubelet keeps per-pod files (termination messages); empty: disabled."""


class Kubelet:
    def __init__(
        self,
        client: Client,
        runtime: Runtime,
        images: ImageService,
        volumes: VolumeManager,
        config: KubeletConfig,
        events: EventRecorder | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.config = config
        self._own_events = events is None
        self.events = events or EventRecorder(client, "kubelet", config.node_name)
        self.deps = WorkerDeps(
            client=client,
            runtime=runtime,
            images=images,
            volumes=volumes,
            status=podstatus.StatusManager(client),
            events=self.events,
            node_name=config.node_name,
            host_ip=config.host_ip,
            backoff=Backoff(config.backoff_base, config.backoff_cap),
            image_backoff=Backoff(config.backoff_base, config.backoff_cap),
            cluster_dns=list(config.cluster_dns),
            cluster_domain=config.cluster_domain,
            node_allocatable=dict(config.node_allocatable),
            config_retry=config.config_retry,
            root_dir=config.root_dir,
        )
        self.informer = Informer(client, POD, field_selector=f"spec.nodeName={config.node_name}")
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()  # uids whose deletion this agent completed
        self._tasks: list[asyncio.Task[None]] = []
        self._seen_states: dict[str, str] = {}  # container id -> state, for the relist

    @property
    def status_manager(self) -> podstatus.StatusManager:
        return self.deps.status

    async def start(self) -> None:
        """Recover the runtime, sync the pod informer, clean orphans, start dispatching."""
        self.deps.started_at = time.time()
        await self.runtime.recover()
        self.informer.add_event_handler(self._on_add, self._on_update, self._on_delete)
        self.informer.start()
        await self.informer.wait_for_sync()
        await self.cleanup_orphans()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._relist_loop(), name="kubelet-relist"))
        log.info("kubelet started node=%s pods=%d", self.config.node_name, len(self.workers))

    async def stop(self) -> None:
        """Stop the agent; containers keep running for the next agent to re-adopt."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.informer.stop()
        for worker in list(self.workers.values()):
            await worker.stop()
        self.workers.clear()
        if self._own_events:
            await self.events.close()

    async def __aenter__(self) -> Kubelet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def worker(self, uid: str) -> PodWorker | None:
        return self.workers.get(uid)

    # --- dispatch ----------------------------------------------------------------------

    def _on_add(self, pod: Obj) -> None:
        self._dispatch(pod)

    def _on_update(self, old: Obj, new: Obj) -> None:
        worker = self.workers.get(new["metadata"]["uid"])
        if worker is not None and _status_only(old, new):
            # Most often the worker's own status write. Upstream's pod config does not
            # sync a pod for a status-only change either; waking here would replace a
            # just-written ErrImagePull with ImagePullBackOff before anyone saw it.
            worker.update(new, wake=False)
            return
        self._dispatch(new)

    def _on_delete(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished:
            self._finished.discard(uid)
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = self._new_worker(pod)
        worker.removed()

    def _dispatch(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished:
            return
        worker = self.workers.get(uid)
        if worker is None:
            self._new_worker(pod)
        else:
            worker.update(pod)

    def _new_worker(self, pod: Obj) -> PodWorker:
        worker = PodWorker(self.deps, pod, self._worker_done)
        self.workers[pod["metadata"]["uid"]] = worker
        worker.start()
        return worker

    def _worker_done(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        if worker is not None and not worker.gone:
            self._finished.add(uid)  # its own delete's events are still to come

    # --- housekeeping ------------------------------------------------------------------

    async def cleanup_orphans(self) -> None:
        """Remove sandboxes (and their containers) of pods not bound here any more."""
        bound = {p["metadata"]["uid"] for p in self.informer.list()}
        for sb in await self.runtime.list_sandboxes():
            if sb.config.uid in bound:
                continue
            log.info(
                "removing orphaned sandbox id=%s pod=%s/%s",
                sb.id,
                sb.config.namespace,
                sb.config.name,
            )
            with contextlib.suppress(NotFound):
                await self.runtime.stop_sandbox(sb.id)
                await self.runtime.remove_sandbox(sb.id)
            orphan = {
                "metadata": {"uid": sb.config.uid, "name": sb.config.name},
                "spec": {},
            }
            with contextlib.suppress(Exception):
                await self.deps.volumes.teardown(orphan)

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.relist_period)
            try:
                await self.relist()
            except Exception:
                log.exception("relist failed")

    async def relist(self) -> None:
        """Wake the workers of pods whose containers changed state since the last look."""
        states = {c.id: (c.sandbox_id, c.state) for c in await self.runtime.list_containers()}
        changed_sandboxes = {
            sandbox
            for cid, (sandbox, state) in states.items()
            if self._seen_states.get(cid) != state
        }
        self._seen_states = {cid: state for cid, (_, state) in states.items()}
        if not changed_sandboxes:
            return
        for worker in self.workers.values():
            if worker.sandbox is not None and worker.sandbox.id in changed_sandboxes:
                worker.wake()


def _status_only(old: Obj, new: Obj) -> bool:
    """Whether `old` and `new` differ only in status and write bookkeeping."""

    def rest(pod: Obj) -> Obj:
        md = {
            k: v
            for k, v in (pod.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields")
        }
        return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": md}

    return rest(old) == rest(new)
