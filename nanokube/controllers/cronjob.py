"""The CronJob controller: create a Job at each scheduled time.

As upstream's `pkg/controller/cronjob/cronjob_controllerv2.go`, `reconcile(key)`:

1. reads the CronJob (gone: done) and the Jobs it controls;
2. reconciles `status.active` with them: a finished Job leaves the list
   (`SawCompletedJob`), a vanished one too (`MissingJob`), an unfinished Job
   not in the list is reported (`UnexpectedJob`); the latest completion of a
   successful Job becomes `lastSuccessfulTime`;
3. unless the CronJob is being deleted, suspended, or has an unknown
   `timeZone` (`UnknownTimeZone`) or schedule (`UnparseableSchedule`), finds
   the most recent scheduled time since the last run (or creation), not
   before `now - startingDeadlineSeconds`; more than 100 missed runs warn
   `TooManyMissedTimes`, a run later than its deadline is skipped with
   `MissSchedule`;
4. applies `concurrencyPolicy`: `Forbid` skips the run while a Job is active
   (`JobAlreadyActive`), `Replace` deletes the active Jobs first, `Allow` runs
   them side by side;
5. creates the Job `<cronjob>-<scheduled time in minutes since the epoch>` from
   `jobTemplate`, annotated `batch.kubernetes.io/cronjob-scheduled-timestamp`,
   adds it to `status.active` and sets `lastScheduleTime`;
6. writes the status, deletes the oldest finished Jobs beyond
   `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, and comes back at
   the next scheduled time.

`now` is an attribute returning an aware datetime, so tests need not wait for
real minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from nanokube.api import cron, errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.batch_cronjob import CRON_JOB
from nanokube.api.resources.batch_job import JOB
from nanokube.client.cache import by_owner_uid
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import ownership
from nanokube.controllers.base import Controller
from nanokube.controllers.job_util import finished_as

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# upstream warns when more runs than this were missed.
MAX_MISSED = 100
# upstream requeues a little after the scheduled time, so the time has surely come.
REQUEUE_SLACK = 0.1


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """`getJobName`: the scheduled time in minutes since the epoch makes runs idempotent."""
    return f"{meta.name(cronjob)}-{int(scheduled.timestamp()) // 60}"


def job_ref(job: Obj) -> Obj:
    md = job["metadata"]
    return {
        "kind": "Job",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md["uid"],
        "apiVersion": "batch/v1",
        "resourceVersion": md.get("resourceVersion", ""),
    }


def job_from_template(cronjob: Obj, scheduled: datetime, zone: Any) -> Obj:
    """`getJobFromTemplate2`: the template's labels, annotations and spec, owned by the CronJob."""
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    tmd = template.get("metadata") or {}
    annotations = dict(tmd.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = _rfc3339_in(scheduled, zone)
    md: Obj = {
        "name": job_name(cronjob, scheduled),
        "namespace": meta.namespace(cronjob),
        "annotations": annotations,
        "ownerReferences": [ownership.new_controller_ref(cronjob, CRON_JOB)],
    }
    if tmd.get("labels"):
        md["labels"] = dict(tmd["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": md,
        "spec": copy_json(template.get("spec") or {}),
    }


def _rfc3339_in(t: datetime, zone: Any) -> str:
    """Go's RFC 3339 in the schedule's zone: `Z` for a zero offset, else `+01:00`."""
    local = t.astimezone(zone)
    if not local.utcoffset():
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    return local.isoformat(timespec="seconds")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CronJobController(Controller):
    name = "cronjob-controller"
    workers = 5  # upstream's --concurrent-cron-job-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The CronJobs to reconcile.
        self.cronjobs = self.watch(informers.informer(CRON_JOB))
        # Their Jobs, indexed by owner so a CronJob's Jobs are one lookup.
        self.jobs = self.watch(
            informers.informer(JOB, indexers={ownership.OWNER_INDEX: by_owner_uid})
        )
        # The clock (aware datetimes): an attribute so tests can move time.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.enqueue_events(self.cronjobs)
        ownership.OwnedEvents(self.cronjobs, self.enqueue).register(self.jobs)

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        cronjob = self.cached_copy(self.cronjobs, key)
        if cronjob is None:
            return
        jobs = ownership.controlled_by(self.jobs, cronjob["metadata"]["uid"])
        original = copy_json(cronjob.get("status") or {})
        requeue = await self.sync_cronjob(cronjob, jobs)
        status = cronjob.get("status") or {}
        if status != original:
            await self.client.update(CRON_JOB, cronjob, subresource="status")
        await self.cleanup_finished_jobs(cronjob, jobs)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    async def sync_cronjob(self, cronjob: Obj, jobs: list[Obj]) -> float | None:
        """Steps 2-5 on `cronjob` (in place); returns seconds until the next run, if any."""
        status = cronjob.setdefault("status", {})
        spec = cronjob.get("spec") or {}
        now = self.now()
        await self._reconcile_active(cronjob, jobs)
        if cronjob["metadata"].get("deletionTimestamp"):
            return None
        try:
            zone = cron.load_zone(spec.get("timeZone") or "")
        except cron.CronError as e:
            self.events.warning(
                cronjob, "UnknownTimeZone", f"invalid timeZone: {spec.get('timeZone')!r}: {e}"
            )
            return None
        if spec.get("suspend"):
            return None
        try:
            schedule = cron.parse(spec.get("schedule", ""), zone)
        except cron.CronError as e:
            self.events.warning(
                cronjob,
                "UnparseableSchedule",
                f"unparseable schedule: {spec.get('schedule')!r} : {e}",
            )
            return None

        scheduled = self._most_recent(cronjob, schedule, now)
        following = _until_next(schedule, now)
        if scheduled is None:
            return following
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < now:
            self.events.warning(
                cronjob,
                "MissSchedule",
                "Missed scheduled time to start a job: "
                + scheduled.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            )
            return following
        name = job_name(cronjob, scheduled)
        active = status.get("active") or []
        if any(ref.get("name") == name for ref in active) or status.get(
            "lastScheduleTime"
        ) == _rfc3339(scheduled):
            return following
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:
            self.events.normal(
                cronjob,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return following
        if policy == "Replace":
            for ref in list(active):
                await self._delete_job(cronjob, ref["name"])
                status["active"] = [r for r in status.get("active") or [] if r is not ref]
        try:
            created = await self.client.create(JOB, job_from_template(cronjob, scheduled, zone))
        except errors.AlreadyExists:
            created = await self.client.get(JOB, name, meta.namespace(cronjob))
            if (ownership.controller_ref(created) or {}).get("uid") != cronjob["metadata"]["uid"]:
                return following  # someone else's Job: upstream assumes they track it
            # Ours, from a sync whose status write was lost (a conflict): record it now.
        except errors.StatusError as e:
            self.events.warning(cronjob, "FailedCreate", f"Error creating job: {e.message}")
            raise
        else:
            self.events.normal(cronjob, "SuccessfulCreate", f"Created job {meta.name(created)}")
        status["active"] = [
            r for r in status.get("active") or [] if r.get("uid") != created["metadata"]["uid"]
        ]
        status["active"] = [*(status.get("active") or []), job_ref(created)]
        status["lastScheduleTime"] = _rfc3339(scheduled)
        if not status["active"]:
            del status["active"]
        return following

    def _most_recent(
        self, cronjob: Obj, schedule: cron.Schedule | cron.Every, now: datetime
    ) -> datetime | None:
        """`nextScheduleTime`: the latest unmet scheduled time, warning when too many passed."""
        status, spec = cronjob.get("status") or {}, cronjob.get("spec") or {}
        since = status.get("lastScheduleTime") or cronjob["metadata"].get("creationTimestamp")
        earliest = datetime.fromtimestamp(meta.parse_time(since), UTC) if since else now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - timedelta(seconds=int(deadline)))
        last, missed = cron.most_recent(schedule, earliest, now, MAX_MISSED)
        if missed > MAX_MISSED:
            self.events.warning(
                cronjob,
                "TooManyMissedTimes",
                f"too many missed start times: {missed}. Set or decrease "
                ".spec.startingDeadlineSeconds or check clock skew",
            )
            # Counting stopped early: the latest time is the last one before now.
            last = _latest_before(schedule, now)
        return last

    async def _reconcile_active(self, cronjob: Obj, jobs: list[Obj]) -> None:
        """Step 2: `status.active` and `lastSuccessfulTime` from the Jobs."""
        status = cronjob["status"]
        active = list(status.get("active") or [])
        uids = {ref.get("uid") for ref in active}
        for job in jobs:
            how = finished_as(job)
            finished = bool(how)
            juid = job["metadata"]["uid"]
            if juid not in uids and not finished:
                self.events.warning(
                    cronjob,
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {meta.name(job)}",
                )
            elif juid in uids and finished:
                active = [r for r in active if r.get("uid") != juid]
                self.events.normal(
                    cronjob,
                    "SawCompletedJob",
                    f"Saw completed job: {meta.name(job)}, condition: {how}",
                )
            if how == "Complete":
                done = (job.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if done and (not last or meta.parse_time(done) > meta.parse_time(last)):
                    status["lastSuccessfulTime"] = done
        present = {j["metadata"]["uid"] for j in jobs}
        for ref in list(active):
            if ref.get("uid") in present:
                continue
            try:
                await self.client.get(JOB, ref.get("name", ""), meta.namespace(cronjob))
                continue  # only our cache lags
            except errors.NotFound:
                pass
            self.events.normal(cronjob, "MissingJob", f"Active job went missing: {ref.get('name')}")
            active = [r for r in active if r is not ref]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def cleanup_finished_jobs(self, cronjob: Obj, jobs: list[Obj]) -> None:
        """Delete the oldest finished Jobs beyond the history limits (`cleanupFinishedJobs`)."""
        spec = cronjob.get("spec") or {}
        for kind, limit_field in (
            ("Complete", "successfulJobsHistoryLimit"),
            ("Failed", "failedJobsHistoryLimit"),
        ):
            limit = spec.get(limit_field)
            if limit is None:
                continue
            finished = [j for j in jobs if finished_as(j) == kind]
            finished.sort(key=_start_time)
            for job in finished[: max(len(finished) - int(limit), 0)]:
                await self._delete_job(cronjob, meta.name(job))

    async def _delete_job(self, cronjob: Obj, name: str) -> None:
        try:
            await self.client.delete(
                JOB, name, meta.namespace(cronjob), propagation_policy="Background"
            )
        except errors.NotFound:
            return
        except errors.StatusError as e:
            self.events.warning(cronjob, "FailedDelete", f"Deleted job: {e.message}")
            raise
        self.events.normal(cronjob, "SuccessfulDelete", f"Deleted job {name}")


def _start_time(job: Obj) -> tuple[float, str]:
    """Oldest first: by status.startTime, else creation (upstream's byJobStartTime)."""
    stamp = (job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp")
    return (meta.parse_time(stamp) if stamp else 0.0, meta.name(job))


def _until_next(schedule: cron.Schedule | cron.Every, now: datetime) -> float | None:
    """Seconds until the next fire time after `now` (None if there is none)."""
    following = schedule.next(now)
    if following is None:
        return None
    return (following - now).total_seconds() + REQUEUE_SLACK


def _latest_before(schedule: cron.Schedule | cron.Every, now: datetime) -> datetime | None:
    """The last fire time at or before `now`, looking back over growing windows."""
    for window in (120, 2 * 3600, 2 * 86400, 62 * 86400, 800 * 86400, 6 * 366 * 86400):
        last, _ = cron.most_recent(schedule, now - timedelta(seconds=window), now, limit=10_000)
        if last is not None:
            return last
    return None
