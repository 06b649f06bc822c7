"""The CronJob controller against a real API server, with an injected clock.

Aspects: a Job per scheduled time (name, annotation, owner, template),
status.active and lastScheduleTime, completed Jobs leaving the active list
(lastSuccessfulTime), concurrency policies Forbid and Replace, suspend, the
time zone of the schedule, too many missed runs, and history limits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller_harness import eventually, running

from nanokube.api import meta
from nanokube.api.resources.batch_cronjob import CRON_JOB
from nanokube.api.resources.batch_job import JOB
from nanokube.api.resources.core_event import EVENT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.cronjob import CronJobController

Obj = dict[str, Any]
# Each test runs over the in-process and the HTTP client (see conftest).
CLIENTS = ("in-process", "http")


def cron_job(schedule: str = "*/5 * * * *", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


class Clock:
    """The controller's `now`, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


async def setup(
    client: Client, informers: SharedInformerFactory, obj: Obj
) -> tuple[CronJobController, Clock, Obj]:
    c = CronJobController(client, informers)
    created = await client.create(CRON_JOB, obj)
    born = datetime.fromtimestamp(meta.parse_time(created["metadata"]["creationTimestamp"]), UTC)
    clock = Clock(born)
    c.now = clock
    return c, clock, created


async def tick(client: Client, clock: Clock, when: datetime) -> None:
    """Move the clock and poke the CronJob so it is reconciled."""
    clock.t = when
    await client.patch(
        CRON_JOB, "hello", {"metadata": {"annotations": {"tick": when.isoformat()}}}, "default"
    )


async def jobs(client: Client) -> list[Obj]:
    return sorted((await client.list(JOB, "default"))["items"], key=lambda j: j["metadata"]["name"])


async def wait_jobs(client: Client, count: int) -> list[Obj]:
    async def check() -> tuple[list[Obj]] | None:
        found = await jobs(client)
        return (found,) if len(found) == count else None

    return (await eventually(check))[0]


async def complete(client: Client, job: Obj, how: str = "Complete") -> None:
    current = await client.get(JOB, job["metadata"]["name"], "default")
    now = meta.now_rfc3339()
    current["status"] = {
        "startTime": now,
        "conditions": [{"type": how, "status": "True", "lastTransitionTime": now}],
    }
    if how == "Complete":
        current["status"]["completionTime"] = now
        current["status"]["succeeded"] = 1
    await client.update(JOB, current, subresource="status")


async def events(client: Client, reason: str) -> list[str]:
    items = (await client.list(EVENT, "default"))["items"]
    return [e["message"] for e in items if e["reason"] == reason]


def next_five(t: datetime) -> datetime:
    """The first */5 minute strictly after t."""
    base = t.replace(second=0, microsecond=0)
    return base + timedelta(minutes=5 - base.minute % 5)


async def test_creates_a_job_at_the_scheduled_time(
    client: Client, informers: SharedInformerFactory
) -> None:
    c, clock, cj = await setup(client, informers, cron_job())
    async with running(informers, c):
        # Before the first scheduled time nothing runs.
        assert await jobs(client) == []
        due = next_five(clock.t)
        await tick(client, clock, due + timedelta(seconds=3))
        (job,) = await wait_jobs(client, 1)
        minutes = int(due.timestamp()) // 60
        assert job["metadata"]["name"] == f"hello-{minutes}"
        assert job["metadata"]["labels"] == {"app": "hello"}
        assert job["metadata"]["annotations"][
            "batch.kubernetes.io/cronjob-scheduled-timestamp"
        ] == due.strftime("%Y-%m-%dT%H:%M:%SZ")
        ref = job["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == (
            "CronJob",
            cj["metadata"]["uid"],
            True,
        )

        async def status() -> Obj | None:
            s = (await client.get(CRON_JOB, "hello", "default")).get("status") or {}
            return s if s.get("active") else None

        s = await eventually(status)
        assert s["active"][0]["name"] == job["metadata"]["name"]
        assert s["active"][0]["uid"] == job["metadata"]["uid"]
        assert s["lastScheduleTime"] == due.strftime("%Y-%m-%dT%H:%M:%SZ")

        async def created_event() -> bool:
            return await events(client, "SuccessfulCreate") == [f"Created job hello-{minutes}"]

        await eventually(created_event)

        # The Job completes: it leaves the active list and sets lastSuccessfulTime.
        await complete(client, job)

        async def done() -> Obj | None:
            s = (await client.get(CRON_JOB, "hello", "default")).get("status") or {}
            return s if "active" not in s and s.get("lastSuccessfulTime") else None

        await eventually(done)

        async def saw() -> bool:
            return await events(client, "SawCompletedJob") == [
                f"Saw completed job: hello-{minutes}, condition: Complete"
            ]

        await eventually(saw)


async def test_forbid_skips_while_a_job_runs(
    client: Client, informers: SharedInformerFactory
) -> None:
    c, clock, _ = await setup(client, informers, cron_job(concurrencyPolicy="Forbid"))
    async with running(informers, c):
        first = next_five(clock.t)
        await tick(client, clock, first + timedelta(seconds=1))
        await wait_jobs(client, 1)
        await tick(client, clock, first + timedelta(minutes=5, seconds=1))

        async def refused() -> bool:
            return bool(await events(client, "JobAlreadyActive"))

        await eventually(refused)
        assert len(await jobs(client)) == 1
        assert (await events(client, "JobAlreadyActive"))[0] == (
            "Not starting job because prior execution is running and concurrency policy is Forbid"
        )


async def test_replace_deletes_the_running_job(
    client: Client, informers: SharedInformerFactory
) -> None:
    c, clock, _ = await setup(client, informers, cron_job(concurrencyPolicy="Replace"))
    async with running(informers, c):
        first = next_five(clock.t)
        await tick(client, clock, first + timedelta(seconds=1))
        (old,) = await wait_jobs(client, 1)
        second = first + timedelta(minutes=5)
        await tick(client, clock, second + timedelta(seconds=1))

        async def replaced() -> Obj | None:
            found = await jobs(client)
            names = [
                j["metadata"]["name"] for j in found if not j["metadata"].get("deletionTimestamp")
            ]
            return found[-1] if names == [f"hello-{int(second.timestamp()) // 60}"] else None

        await eventually(replaced)
        assert f"Deleted job {old['metadata']['name']}" in await events(client, "SuccessfulDelete")


async def test_suspended_cronjob_creates_nothing(
    client: Client, informers: SharedInformerFactory
) -> None:
    c, clock, _ = await setup(client, informers, cron_job(suspend=True))
    ticks_seen: list[str] = []

    async def sync(key: str) -> None:
        await c.reconcile(key)
        cached = c.cronjobs.get("hello", "default") or {}
        ticks_seen.append(((cached.get("metadata") or {}).get("annotations") or {}).get("tick", ""))

    c.sync = sync
    async with running(informers, c):
        due = next_five(clock.t) + timedelta(seconds=1)
        await tick(client, clock, due)

        async def reconciled() -> bool:
            return due.isoformat() in ticks_seen

        await eventually(reconciled)
        assert await jobs(client) == []


async def test_time_zone_of_the_schedule(client: Client, informers: SharedInformerFactory) -> None:
    c, clock, _ = await setup(
        client, informers, cron_job(schedule="30 9 * * *", timeZone="Asia/Kolkata")
    )
    async with running(informers, c):
        # 09:30 in Kolkata (UTC+05:30) is 04:00 UTC.
        start = clock.t
        due = start.replace(hour=4, minute=0, second=0, microsecond=0)
        if due <= start:
            due += timedelta(days=1)
        await tick(client, clock, due + timedelta(seconds=5))
        (job,) = await wait_jobs(client, 1)
        stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        assert stamp.endswith("T09:30:00+05:30")


async def test_too_many_missed_runs_warn_and_run_the_latest(
    client: Client, informers: SharedInformerFactory
) -> None:
    c, clock, _ = await setup(client, informers, cron_job(schedule="* * * * *"))
    async with running(informers, c):
        later = clock.t + timedelta(minutes=150, seconds=5)
        await tick(client, clock, later)
        (job,) = await wait_jobs(client, 1)
        latest = later.replace(second=0, microsecond=0)
        assert job["metadata"]["name"] == f"hello-{int(latest.timestamp()) // 60}"

        async def warned() -> list[str] | None:
            return await events(client, "TooManyMissedTimes") or None

        (message,) = await eventually(warned)
        assert message.startswith("too many missed start times: ")
        assert message.endswith(
            ". Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        )


async def test_history_limits(client: Client, informers: SharedInformerFactory) -> None:
    c, clock, _ = await setup(
        client, informers, cron_job(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    )
    async with running(informers, c):
        t = next_five(clock.t)
        for i, how in enumerate(("Complete", "Failed", "Complete")):
            await tick(client, clock, t + timedelta(minutes=5 * i, seconds=1))
            found = await wait_jobs(client, i + 1 if i < 2 else 2)
            newest = found[-1]
            await complete(client, newest, how)

        async def trimmed() -> list[str] | None:
            names = [j["metadata"]["name"] for j in await jobs(client)]
            return names if len(names) == 1 else None

        names = await eventually(trimmed)
        assert names == [f"hello-{int((t + timedelta(minutes=10)).timestamp()) // 60}"]
