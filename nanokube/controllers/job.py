"""The Job controller: run pods until enough succeed, or give up.

As upstream's `pkg/controller/job/job_controller.go`, `reconcile(key)` (syncJob):

1. reads the Job (gone: forget it); a finished Job (Complete or Failed) is done;
2. claims its pods (adopted pods get the `batch.kubernetes.io/job-tracking`
   finalizer counted as theirs) and counts: active, ready, terminating, pods
   newly Succeeded or failed (a deleted unfinished pod counts as failed unless
   only failed pods are replaced);
3. decides whether the Job is finished: a pod failure policy `FailJob` rule,
   more failures than `backoffLimit` (`BackoffLimitExceeded`), or longer than
   `activeDeadlineSeconds` (`DeadlineExceeded`) fail it; `completions`
   successes (every index, for an Indexed Job) complete it;
4. a finished Job's active pods are deleted; otherwise (`manage_job`) a
   suspended Job deletes its pods, and a running one deletes the excess or
   creates up to `parallelism` pods (Indexed: the lowest pending indexes), but
   not before the failure back-off (10 s doubling, capped at 6 min) has passed;
5. tracks finished pods with finalizers (`track_and_remove_finalizers`): their
   uids go into `status.uncountedTerminatedPods` first, then their finalizers
   are removed, then they are moved to `succeeded`/`failed`, so a crash never
   counts a pod twice or loses it. Only then, with no pod still terminating,
   the interim condition `FailureTarget` / `SuccessCriteriaMet` becomes
   `Failed` / `Complete` (with `completionTime`), and the events
   `Completed` "Job completed" or the failure reason are recorded.

Pod writes live in `job_manage`, the counting of step 5 in `job_tracking`,
pure rules in `job_util`. `now` and the back-off base are attributes, so
tests need not wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.batch_job import JOB
from nanokube.api.resources.core import POD
from nanokube.client.cache import key_of, split_key
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import STRATEGIC_PATCH, Client
from nanokube.controllers import job_util as ju
from nanokube.controllers import ownership, pods
from nanokube.controllers.base import PodOwnerController
from nanokube.controllers.job_manage import REMOVE_FINALIZER, JobPodManager
from nanokube.controllers.job_tracking import JobStatusTracker
from nanokube.controllers.job_util import (
    SyncContext,
    condition,
    ensure_condition,
    find_condition,
    is_finished,
    rfc3339,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class JobController(PodOwnerController):
    name = "job-controller"
    workers = 5  # upstream's --concurrent-job-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The Jobs to reconcile.
        self.jobs = self.watch(informers.informer(JOB))
        # Their pods, found by namespace and selector.
        self.pods = self.watch(informers.informer(POD))
        # Pod uids whose finalizer removal is not yet seen, by Job key: such a
        # pod is counted already and must not be counted again from a stale cache.
        self.finalizer_removals: dict[str, set[str]] = {}
        # Failure back-off per Job key (upstream keeps it in memory as well).
        self.backoffs: dict[str, ju.BackoffRecord] = {}
        # The clock and the back-off base: attributes so tests can go fast.
        self.now: Callable[[], float] = time.time
        self.backoff_base = ju.DEFAULT_BACKOFF
        self.backoff_max = ju.MAX_BACKOFF
        self.manager = JobPodManager(self)
        self.tracker = JobStatusTracker(self)
        self.jobs.add_event_handler(self.enqueue, self._job_updated, self._job_deleted)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- event handlers -----------------------------------------------------------

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)
        deadline = (new.get("spec") or {}).get("activeDeadlineSeconds")
        start = (new.get("status") or {}).get("startTime")
        if deadline is not None and start and not is_finished(new):
            left = meta.parse_time(start) + int(deadline) - self.now()
            self.enqueue_after(new, max(left, 0.0))

    def _job_deleted(self, job: Obj) -> None:
        key = key_of(job)
        self.expectations.forget(key)
        self.finalizer_removals.pop(key, None)
        self.backoffs.pop(key, None)
        self.enqueue(job)  # its pods' finalizers must still be removed

    def _pod_added(self, pod: Obj) -> None:
        job = ownership.resolve(self.jobs, pod)
        if job is None:
            self._release_orphan(pod)
            return
        self.expectations.creation_observed(key_of(job))
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key_of(job), key_of(pod))
        self.enqueue(job)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        job = ownership.resolve(self.jobs, new)
        if job is None:
            self._release_orphan(new)
            return
        key = key_of(job)
        if new["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, key_of(new))
        if not ju.has_finalizer(new):
            self.finalizer_removals.get(key, set()).discard(new["metadata"].get("uid", ""))
        self.enqueue(job)

    def _pod_deleted(self, pod: Obj) -> None:
        job = ownership.resolve(self.jobs, pod)
        if job is None:
            return
        key = key_of(job)
        self.expectations.deletion_observed(key, key_of(pod))
        self.finalizer_removals.get(key, set()).discard(pod["metadata"].get("uid", ""))
        self.enqueue(job)

    def _release_orphan(self, pod: Obj) -> None:
        """A pod whose Job is gone keeps no tracking finalizer (`syncOrphanPod`)."""
        ref = ownership.controller_ref(pod)
        if not ju.has_finalizer(pod) or (ref is not None and ref.get("kind") != "Job"):
            return
        self.queue.add(f"pod:{key_of(pod)}")

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith("pod:"):
            await self._remove_orphan_finalizer(key[len("pod:") :])
            return
        job = self.cached_owner(self.jobs, key)
        if job is None:
            self.backoffs.pop(key, None)
            return
        if is_finished(job):
            self.backoffs.pop(key, None)
            return
        await self.sync_job(key, job)

    async def sync_job(self, key: str, job: Obj) -> None:
        spec = job.get("spec") or {}
        status = job.setdefault("status", {})
        original = copy_json(status)
        now = self.now()
        satisfied = self.expectations.satisfied(key)
        ctx = await self._context(key, job)

        # The first start (not while suspended) stamps startTime.
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = rfc3339(now)
        new_succeeded, new_failed = self._new_finished(ctx)
        ctx.succeeded = (
            int(status.get("succeeded") or 0) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        )
        counted = [p for p in new_failed if ju.match_failure_policy(job, p).count]
        ctx.failed = int(status.get("failed") or 0) + len(counted) + len(ctx.uncounted_failed)
        ctx.new_backoff = self.backoffs.get(key, ju.BackoffRecord()).next_record(
            new_succeeded, new_failed, now
        )
        self._decide_failure(key, ctx, now)
        if spec.get("completionMode") == "Indexed":
            completions = int(spec.get("completions") or 0)
            ctx.prev_succeeded_indexes = ju.parse_indexes(
                status.get("completedIndexes"), completions
            )
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes | {
                ix
                for p in ctx.pods
                if ju.phase(p) == "Succeeded"
                and ju.has_finalizer(p)
                and (ix := ju.valid_index(p, completions)) is not None
            }
            ctx.succeeded = len(ctx.succeeded_indexes)

        manage_error: Exception | None = None
        active = len(ctx.active)
        if ctx.finished is not None:
            # A finishing Job stops its pods, keeping their finalizers so they are counted.
            deleted_ready, deleted, manage_error = await self.manager.delete_active(job, ctx.active)
            if deleted != active or not satisfied:
                ctx.finished = None  # not finished until every pod is seen going
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                active, manage_error = await self.manager.manage(key, job, ctx)
                managed = True
            wanted = spec.get("completions")
            if wanted is None:
                complete = ctx.succeeded > 0 and active == 0
            else:
                complete = ctx.succeeded >= int(wanted) and active == 0
            if complete:
                ctx.finished = condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                )
            elif managed:
                self._suspend_condition(job, now)
        status["active"] = active
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self.tracker.track_and_remove_finalizers(key, ctx, status != original, now)
        if manage_error is not None:
            raise manage_error

    async def _context(self, key: str, job: Obj) -> SyncContext:
        """Claim the Job's pods and count them (`getPodsForJob`)."""
        namespace = meta.namespace(job)
        uid = job["metadata"]["uid"]
        try:
            selector = selectors.label_selector_from_object((job.get("spec") or {}).get("selector"))
        except errors.StatusError:
            selector = selectors.NOTHING
        candidates = self.pods.list(namespace)
        ours_before = {
            p["metadata"].get("uid")
            for p in candidates
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or ())
        }
        check = ownership.owner_checker(self.client, JOB, job)
        owned = await ownership.claim(self.client, POD, candidates, job, JOB, selector, check)
        claimed = []
        for pod in owned:
            if pod["metadata"].get("uid") not in ours_before and not ju.has_finalizer(pod):
                # An adopted pod is tracked as if it had been created with the finalizer.
                pod = copy_json(pod)
                pod["metadata"]["finalizers"] = [
                    *(pod["metadata"].get("finalizers") or ()),
                    ju.TRACKING_FINALIZER,
                ]
            claimed.append(pod)
        active = [p for p in claimed if pods.is_active(p)]
        uncounted = (job.get("status") or {}).get("uncountedTerminatedPods") or {}
        return SyncContext(
            job=job,
            pods=claimed,
            active=active,
            ready=sum(1 for p in active if pods.is_ready(p)),
            terminating=sum(1 for p in claimed if ju.is_terminating(p)),
            uncounted_succeeded=set(uncounted.get("succeeded") or ()),
            uncounted_failed=set(uncounted.get("failed") or ()),
            expected_removals=set(self.finalizer_removals.get(key, ())),
        )

    def _not_yet_counted(self, ctx: SyncContext, pod: Obj) -> bool:
        """Has the finalizer, is in no uncounted list, and (Indexed) has a valid index."""
        uid = pod["metadata"].get("uid", "")
        if not ju.has_finalizer(pod) or uid in ctx.expected_removals:
            return False
        if uid in ctx.uncounted_succeeded or uid in ctx.uncounted_failed:
            return False
        spec = ctx.job.get("spec") or {}
        if spec.get("completionMode") == "Indexed":
            return ju.valid_index(pod, int(spec.get("completions") or 0)) is not None
        return True

    def _new_finished(self, ctx: SyncContext) -> tuple[list[Obj], list[Obj]]:
        """`getNewFinishedPods`: pods finished since the last count."""
        fresh = [p for p in ctx.pods if self._not_yet_counted(ctx, p)]
        succeeded = [p for p in fresh if ju.phase(p) == "Succeeded"]
        failed = [p for p in fresh if ju.is_pod_failed(p, ctx.job)]
        return succeeded, failed

    def _decide_failure(self, key: str, ctx: SyncContext, now: float) -> None:
        """The failure condition the Job is heading to, if any (or requeue at its deadline)."""
        job, spec = ctx.job, ctx.job.get("spec") or {}
        met = find_condition(job, "SuccessCriteriaMet")
        if met is not None and met.get("status") == "True":
            ctx.finished = met
            return
        target = find_condition(job, "FailureTarget")
        if target is not None and target.get("status") == "True":
            ctx.finished = target
            return
        for pod in ctx.pods:
            if ju.is_pod_failed(pod, job):
                message = ju.match_failure_policy(job, pod).fail_job_message
                if message is not None:
                    ctx.finished = condition("FailureTarget", "PodFailurePolicy", message, now)
                    return
        backoff_limit = int(spec.get("backoffLimit", 6))
        if ctx.failed > backoff_limit or self._past_backoff_on_failure(ctx):
            ctx.finished = condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            )
            return
        deadline = spec.get("activeDeadlineSeconds")
        start = (job.get("status") or {}).get("startTime")
        if deadline is None or not start or spec.get("suspend"):
            return
        left = meta.parse_time(start) + int(deadline) - now
        if left <= 0:
            ctx.finished = condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            )
        else:
            self.queue.add_after(key, left)

    @staticmethod
    def _past_backoff_on_failure(ctx: SyncContext) -> bool:
        """`pastBackoffLimitOnFailure`: restarts of running pods count with `OnFailure`."""
        spec = ctx.job.get("spec") or {}
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(
            ju.restart_count(p) for p in ctx.pods if ju.phase(p) in ("Running", "Pending")
        )
        limit = int(spec.get("backoffLimit", 6))
        return restarts > 0 if limit == 0 else restarts >= limit

    def _suspend_condition(self, job: Obj, now: float) -> None:
        """The Suspended condition, its events, and a fresh startTime on resume."""
        status = job["status"]
        conditions = status.setdefault("conditions", [])
        if (job.get("spec") or {}).get("suspend"):
            if ensure_condition(
                conditions, "Suspended", "True", "JobSuspended", "Job suspended", now
            ):
                self.events.normal(job, "Suspended", "Job suspended")
        elif ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now):
            self.events.normal(job, "Resumed", "Job resumed")
            # activeDeadlineSeconds counts from the resume.
            status["startTime"] = rfc3339(now)
        if not conditions:
            del status["conditions"]

    async def _remove_orphan_finalizer(self, pod_key: str) -> None:
        namespace, name = split_key(pod_key)
        pod = self.pods.get(name, namespace)
        if pod is None or not ju.has_finalizer(pod):
            return
        job = ownership.resolve(self.jobs, pod)
        if job is not None and not is_finished(job):
            return  # adopted meanwhile: its Job counts it
        try:
            await self.client.patch(
                POD, name, REMOVE_FINALIZER, namespace, patch_type=STRATEGIC_PATCH
            )
        except errors.NotFound:
            pass
