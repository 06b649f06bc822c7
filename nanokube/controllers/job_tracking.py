"""The Job controller's counting of finished pods (`trackJobStatusAndRemoveFinalizers`).

A Job's pods carry the `batch.kubernetes.io/job-tracking` finalizer until the
Job has counted them, so a pod deleted right after it finished is still
counted, and counted once. Each sync:

1. records the uids of newly finished pods in `status.uncountedTerminatedPods`
   (and the interim `FailureTarget` / `SuccessCriteriaMet` condition) and
   writes the status;
2. removes those pods' finalizers;
3. moves the released uids from the uncounted lists to `succeeded`/`failed`;
4. once nothing is uncounted and no pod is terminating, adds the terminal
   `Complete` (with `completionTime`) or `Failed` condition, writes the status
   and records the events (`Completed` "Job completed", or the failure reason).

A crash between any two steps leaves a state the next sync finishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanokube.api.resources.batch_job import JOB
from nanokube.controllers import job_util as ju
from nanokube.controllers.job_util import SyncContext, condition, ensure_condition, rfc3339

if TYPE_CHECKING:
    from nanokube.controllers.job import JobController

Obj = dict[str, Any]

# upstream's MaxUncountedPods: uids recorded in status before counters must be flushed.
MAX_UNCOUNTED_PODS = 500


class JobStatusTracker:
    """The status writes of one `JobController` (shares its client, manager and events)."""

    def __init__(self, controller: JobController) -> None:
        self.c = controller

    async def track_and_remove_finalizers(
        self, key: str, ctx: SyncContext, needs_flush: bool, now: float
    ) -> None:
        """`trackJobStatusAndRemoveFinalizers`; see the module docstring, step 5."""
        job = ctx.job
        spec, status = job.get("spec") or {}, job["status"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 0)
        uncounted = {
            "succeeded": [u for u in ctx.uncounted_succeeded],
            "failed": [u for u in ctx.uncounted_failed],
        }
        with_finalizer = {
            p["metadata"]["uid"]
            for p in ctx.pods
            if ju.has_finalizer(p) and p["metadata"]["uid"] not in ctx.expected_removals
        }
        needs_flush |= _count_uncounted(status, uncounted, with_finalizer)
        to_release: list[Obj] = []
        new_indexes: set[int] = set()
        job_ending = ctx.finished is not None and ctx.finished["type"] != "SuccessCriteriaMet"
        for pod in ctx.pods:
            uid = pod["metadata"]["uid"]
            if not ju.has_finalizer(pod) or uid in ctx.expected_removals:
                continue
            failed = ju.is_pod_failed(pod, job)
            deleting = bool(job["metadata"].get("deletionTimestamp"))
            if not (deleting or ctx.finished or ju.phase(pod) == "Succeeded" or failed):
                continue
            to_release.append(pod)
            if ju.phase(pod) == "Succeeded" and uid not in uncounted["failed"]:
                if indexed:
                    ix = ju.valid_index(pod, completions)
                    if ix is not None and ix not in ctx.prev_succeeded_indexes:
                        new_indexes.add(ix)
                elif uid not in uncounted["succeeded"]:
                    uncounted["succeeded"].append(uid)
                    needs_flush = True
            elif (failed or job_ending) and uid not in uncounted["failed"]:
                if indexed and ju.valid_index(pod, completions) is None:
                    continue
                if ju.match_failure_policy(job, pod).count:
                    uncounted["failed"].append(uid)
                    needs_flush = True
            if len(new_indexes) + len(uncounted["succeeded"]) + len(uncounted["failed"]) >= (
                MAX_UNCOUNTED_PODS
            ):
                break
        if indexed:
            indexes = ctx.prev_succeeded_indexes | new_indexes
            status["succeeded"] = len(indexes)
            text = ju.format_indexes(indexes)
            needs_flush |= text != (status.get("completedIndexes") or "")
            status["completedIndexes"] = text
        final, added = self._interim_condition(ctx, now)
        needs_flush |= added
        status["uncountedTerminatedPods"] = _uncounted_status(uncounted)

        # 1. record the uids (and the interim condition) before touching any pod;
        if needs_flush:
            await self._write(ctx)
            self.c.backoffs[key] = ctx.new_backoff
            needs_flush = False
        # 2. release the pods;
        released, release_error = await self.c.manager.remove_finalizers(key, to_release)
        with_finalizer -= released
        # 3. move what was released from the uncounted lists to the counters.
        needs_flush |= _count_uncounted(status, uncounted, with_finalizer)
        status["uncountedTerminatedPods"] = _uncounted_status(uncounted)
        finished = self._enact_finished(ctx, final, now, uncounted)
        if needs_flush or finished:
            await self._write(ctx)
            if finished and final is not None:
                self._record_finished(job, final)
        if release_error is not None:
            raise release_error

    def _interim_condition(self, ctx: SyncContext, now: float) -> tuple[Obj | None, bool]:
        """Add FailureTarget/SuccessCriteriaMet (True when added); return the terminal one."""
        cond = ctx.finished
        if cond is None:
            return None, False
        conditions = ctx.job["status"].setdefault("conditions", [])
        added = not any(c.get("type") == cond["type"] for c in conditions)
        if added:
            conditions.append(cond)
        terminal = "Failed" if cond["type"] == "FailureTarget" else "Complete"
        return condition(terminal, cond.get("reason", ""), cond.get("message", ""), now), added

    def _enact_finished(
        self, ctx: SyncContext, final: Obj | None, now: float, uncounted: dict[str, list[str]]
    ) -> bool:
        """`enactJobFinished`: the terminal condition, once nothing is uncounted or terminating."""
        if final is None or uncounted["succeeded"] or uncounted["failed"] or ctx.terminating > 0:
            return False
        status = ctx.job["status"]
        conditions = status.setdefault("conditions", [])
        ensure_condition(
            conditions, final["type"], "True", final.get("reason", ""), final["message"], now
        )
        if final["type"] == "Complete":
            status["completionTime"] = rfc3339(now)
        return True

    def _record_finished(self, job: Obj, final: Obj) -> None:
        """`recordJobFinished`: the events of a finished Job."""
        if final["type"] == "Complete":
            completions = (job.get("spec") or {}).get("completions")
            if completions is not None and job["status"].get("succeeded", 0) > completions:
                self.c.events.warning(
                    job,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                )
            self.c.events.normal(job, "Completed", "Job completed")
        else:
            self.c.events.warning(job, final.get("reason", ""), final.get("message", ""))

    async def _write(self, ctx: SyncContext) -> None:
        """PUT the status; a stale Job raises Conflict and the sync is retried from scratch."""
        written = await self.c.client.update(JOB, ctx.job, subresource="status")
        # Keep working on our copy (later steps hold references into it), at the new version.
        ctx.job["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"]


def _count_uncounted(
    status: Obj, uncounted: dict[str, list[str]], with_finalizer: set[str]
) -> bool:
    """`cleanUncountedPodsWithoutFinalizers`: released uids move to the counters."""
    changed = False
    for field_name in ("succeeded", "failed"):
        kept = [u for u in uncounted[field_name] if u in with_finalizer]
        if len(kept) != len(uncounted[field_name]):
            status[field_name] = (
                int(status.get(field_name) or 0) + len(uncounted[field_name]) - len(kept)
            )
            uncounted[field_name] = kept
            changed = True
    return changed


def _uncounted_status(uncounted: dict[str, list[str]]) -> Obj:
    return {k: list(v) for k, v in uncounted.items() if v}
