"""The Job controller's pod writes: create, delete and release pods (`manageJob`).

`manage` makes the number of active pods what the Job wants: none while
suspended; otherwise `parallelism`, but never more than the completions still
missing (a Job without `completions` keeps its running pods once one
succeeded). Excess pods are deleted first (for an Indexed Job, duplicates of
an index and out-of-range indexes go first); missing pods are created in
slow-start batches after the failure back-off, each with the tracking
finalizer and, for an Indexed Job, its completion index (annotation, label,
hostname `<job>-<index>`, generateName `<job>-<index>-` and the
`JOB_COMPLETION_INDEX` environment variable). A suspended or excess pod has
its finalizer removed before it is deleted, so it is not counted as failed; a
finishing Job's pods keep theirs, to be counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from nanokube.api import errors, meta
from nanokube.api.resources.batch_job import JOB
from nanokube.api.resources.core import POD
from nanokube.client.cache import key_of
from nanokube.client.interface import STRATEGIC_PATCH
from nanokube.controllers import job_util as ju
from nanokube.controllers import ownership, pods
from nanokube.controllers.replicaset import pod_from_template, slow_start_batch

if TYPE_CHECKING:
    from nanokube.controllers.job import JobController, SyncContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# upstream's MaxPodCreateDeletePerSync.
MAX_POD_CHANGES_PER_SYNC = 500
REMOVE_FINALIZER = {"metadata": {"$deleteFromPrimitiveList/finalizers": [ju.TRACKING_FINALIZER]}}


class JobPodManager:
    """The pod writes of one `JobController` (shares its client, expectations and events)."""

    def __init__(self, controller: JobController) -> None:
        self.c = controller

    async def manage(self, key: str, job: Obj, ctx: SyncContext) -> tuple[int, Exception | None]:
        """Create or delete pods towards the wanted number; returns (active, error)."""
        spec = job.get("spec") or {}
        active = len(ctx.active)
        if spec.get("suspend"):
            removed_ready, removed, error = await self.delete_pods(key, job, ctx.active)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed, error

        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - ctx.succeeded, parallelism), 0)

        excess = self._for_removal(job, ctx.active, max(active - want, 0))
        if excess:
            excess = excess[:MAX_POD_CHANGES_PER_SYNC]
            removed_ready, removed, error = await self.delete_pods(key, job, excess)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed, error  # deletes and creates never share a sync

        terminating = ctx.terminating if ju.only_replace_failed(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, None
        wait = ctx.new_backoff.remaining(self.c.backoff_base, self.c.backoff_max, self.c.now())
        if wait > 0:
            self.c.queue.add_after(key, wait)
            return active, None
        diff = min(diff, MAX_POD_CHANGES_PER_SYNC)
        indexes: list[int] = []
        if spec.get("completionMode") == "Indexed":
            indexes = _pending_indexes(ctx, int(completions or 0), diff)
            diff = len(indexes)
        created, error = await self._create_pods(key, job, diff, indexes)
        return active + created, error

    def _for_removal(self, job: Obj, active: list[Obj], at_least: int) -> list[Obj]:
        """`activePodsForRemoval`: repeated or invalid indexes, then the least advanced pods."""
        remove: list[Obj] = []
        left = list(active)
        spec = job.get("spec") or {}
        if spec.get("completionMode") == "Indexed":
            completions = int(spec.get("completions") or 0)
            seen: set[int] = set()
            left = []
            for pod in sorted(active, key=lambda p: meta.name(p)):
                ix = ju.valid_index(pod, completions)
                if ix is None or ix in seen:
                    remove.append(pod)
                else:
                    seen.add(ix)
                    left.append(pod)
        if len(remove) < at_least:
            left.sort(key=pods.deletion_order_key)
            remove += left[: at_least - len(remove)]
        return remove

    async def _create_pods(
        self, key: str, job: Obj, count: int, indexes: list[int]
    ) -> tuple[int, Exception | None]:
        self.c.expectations.expect_creations(key, count)
        ref = ownership.new_controller_ref(job, JOB)
        pending = list(indexes)

        async def create_one() -> None:
            index = pending.pop(0) if pending else None
            pod = new_pod(job, ref, index)
            try:
                created = await self.c.client.create(POD, pod)
            except errors.StatusError as e:
                if isinstance(e, errors.Forbidden) and "being terminated" in e.message:
                    return
                self.c.events.warning(job, "FailedCreate", f"Error creating: {e.message}")
                raise
            self.c.events.normal(job, "SuccessfulCreate", f"Created pod: {meta.name(created)}")

        created, error = await slow_start_batch(count, 1, create_one)
        if count - created:
            self.c.expectations.creation_observed(key, count - created)
        return created, error

    async def delete_pods(
        self, key: str, job: Obj, victims: list[Obj]
    ) -> tuple[int, int, Exception | None]:
        """`deleteJobPods`: release each pod's finalizer, then delete it (not counted)."""
        self.c.expectations.expect_deletions(key, [key_of(p) for p in victims])

        async def delete_one(pod: Obj) -> None:
            try:
                if ju.has_finalizer(pod):
                    await self._patch_out_finalizer(pod)
                await self.c.client.delete(POD, meta.name(pod), meta.namespace(pod))
            except errors.StatusError as e:
                self.c.expectations.deletion_observed(key, key_of(pod))
                if isinstance(e, errors.NotFound):
                    return
                self.c.events.warning(job, "FailedDelete", f"Error deleting: {e.message}")
                raise
            self.c.events.normal(job, "SuccessfulDelete", f"Deleted pod: {meta.name(pod)}")

        return await _delete_all(victims, delete_one)

    async def delete_active(
        self, job: Obj, victims: list[Obj]
    ) -> tuple[int, int, Exception | None]:
        """`deleteActivePods`: a finishing Job's pods keep their finalizers, to be counted."""

        async def delete_one(pod: Obj) -> None:
            try:
                await self.c.client.delete(POD, meta.name(pod), meta.namespace(pod))
            except errors.NotFound:
                return
            self.c.events.normal(job, "SuccessfulDelete", f"Deleted pod: {meta.name(pod)}")

        return await _delete_all(victims, delete_one)

    async def remove_finalizers(
        self, key: str, victims: list[Obj]
    ) -> tuple[set[str], Exception | None]:
        """Release counted pods; returns the uids released (or already gone) and the first error."""
        expected = self.c.finalizer_removals.setdefault(key, set())
        expected.update(p["metadata"]["uid"] for p in victims)
        released: set[str] = set()
        failure: Exception | None = None
        for pod in victims:
            uid = pod["metadata"]["uid"]
            try:
                await self._patch_out_finalizer(pod)
            except errors.NotFound:
                pass
            except errors.StatusError as e:
                expected.discard(uid)
                failure = failure or e
                continue
            released.add(uid)
        return released, failure

    async def _patch_out_finalizer(self, pod: Obj) -> None:
        await self.c.client.patch(
            POD, meta.name(pod), REMOVE_FINALIZER, meta.namespace(pod), patch_type=STRATEGIC_PATCH
        )


async def _delete_all(victims: list[Obj], delete_one: Any) -> tuple[int, int, Exception | None]:
    results = await asyncio.gather(*(delete_one(p) for p in victims), return_exceptions=True)
    deleted = deleted_ready = 0
    failure: Exception | None = None
    for pod, result in zip(victims, results, strict=True):
        if isinstance(result, Exception):
            failure = failure or result
            continue
        if isinstance(result, BaseException):
            raise result
        deleted += 1
        deleted_ready += pods.is_ready(pod)
    return deleted_ready, deleted, failure


def _pending_indexes(ctx: SyncContext, completions: int, count: int) -> list[int]:
    """`firstPendingIndexes`: the lowest indexes neither succeeded nor running."""
    taken = set(ctx.succeeded_indexes)
    taken |= {ix for p in ctx.active if (ix := ju.valid_index(p, completions)) is not None}
    return [ix for ix in range(completions) if ix not in taken][:count]


def new_pod(job: Obj, owner_ref: Obj, index: int | None) -> Obj:
    """A pod of the Job: its template, the tracking finalizer, and its index if Indexed."""
    pod = pod_from_template(job, owner_ref)
    md = pod["metadata"]
    finalizers = md.setdefault("finalizers", [])
    if ju.TRACKING_FINALIZER not in finalizers:
        finalizers.append(ju.TRACKING_FINALIZER)
    if index is None:
        return pod
    name = meta.name(job)
    md["generateName"] = f"{name}-{index}-"
    md["annotations"] = {**(md.get("annotations") or {}), ju.COMPLETION_INDEX: str(index)}
    md["labels"] = {**(md.get("labels") or {}), ju.COMPLETION_INDEX: str(index)}
    spec = pod["spec"]
    spec["hostname"] = f"{name}-{index}"
    env_var = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {
            "fieldRef": {
                "apiVersion": "v1",
                "fieldPath": f"metadata.annotations['{ju.COMPLETION_INDEX}']",
            }
        },
    }
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or ():
            env = container.setdefault("env", [])
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                env.append(env_var)
    return pod
