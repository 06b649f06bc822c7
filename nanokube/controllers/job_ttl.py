"""The TTL-after-finished controller: delete finished Jobs once their TTL has passed.

As upstream's `pkg/controller/ttlafterfinished`, `reconcile(key)` reads a Job
with `spec.ttlSecondsAfterFinished` that has finished (Complete or Failed);
its finish time is `status.completionTime`, else the finished condition's
`lastTransitionTime`. Before the TTL has run out it comes back at the expiry;
after, it re-reads the Job from the API (the TTL or the Job may have changed)
and deletes it with Background propagation and a uid precondition, so the
garbage collector removes its pods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.batch_job import JOB
from nanokube.client.cache import split_key
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def finish_time(job: Obj) -> float | None:
    """When a finished Job finished, or None if it has not."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            stamp = status.get("completionTime") or cond.get("lastTransitionTime")
            return meta.parse_time(stamp) if stamp else None
    return None


def expires_in(job: Obj, now: float) -> float | None:
    """Seconds until the Job may be deleted (<= 0: now); None when it never expires."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = finish_time(job)
    if ttl is None or finished is None or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return finished + int(ttl) - now


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished-controller"
    workers = 5  # upstream's --concurrent-ttl-after-finished-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The Jobs, to see them finish.
        self.jobs = self.watch(informers.informer(JOB))
        # The clock: an attribute so tests need not wait for the TTL.
        self.now: Callable[[], float] = time.time
        self.jobs.add_event_handler(self._job_changed, self._job_updated, None)

    def _job_changed(self, job: Obj) -> None:
        if expires_in(job, self.now()) is not None:
            self.enqueue(job)

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self._job_changed(new)

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.jobs.get(name, namespace)
        if cached is None or (left := expires_in(cached, self.now())) is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        # The cache may be stale: check the live Job before deleting it.
        try:
            fresh = await self.client.get(JOB, name, namespace)
        except errors.NotFound:
            return
        left = expires_in(fresh, self.now())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        log.info("deleting expired job job=%s", key)
        try:
            await self.client.delete(
                JOB,
                name,
                namespace,
                propagation_policy="Background",
                preconditions={"uid": fresh["metadata"]["uid"]},
            )
        except errors.NotFound:
            return
