"""The Job controller against a real API server.

Aspects: pods from the template with the tracking finalizer, completions and
parallelism, counting through uncountedTerminatedPods and finalizer removal,
the interim and terminal conditions (SuccessCriteriaMet → Complete,
FailureTarget → Failed) with upstream reasons and messages, backoffLimit with
the re-creation back-off, Indexed Jobs (index annotation, label, hostname,
completedIndexes), activeDeadlineSeconds, suspend and resume, the pod failure
policy (FailJob, Ignore), and events.
"""

from __future__ import annotations

import time
from typing import Any

from controller_harness import eventually, running

from nanokube.api import meta
from nanokube.api.resources.batch_job import JOB
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.job import JobController
from nanokube.controllers.job_ttl import TTLAfterFinishedController

Obj = dict[str, Any]
# Each test runs over the in-process and the HTTP client (see conftest).
CLIENTS = ("in-process", "http")
FINALIZER = "batch.kubernetes.io/job-tracking"


def job(name: str = "pi", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
            **spec,
        },
    }


def controller(client: Client, informers: SharedInformerFactory) -> JobController:
    c = JobController(client, informers)
    c.backoff_base = 0.01  # fast re-creation after failures
    return c


async def live_pods(client: Client) -> list[Obj]:
    items = (await client.list(POD, "default"))["items"]
    return [p for p in items if p["status"].get("phase") in ("Pending", "Running")]


async def wait_live(client: Client, count: int) -> list[Obj]:
    async def check() -> tuple[list[Obj]] | None:
        found = await live_pods(client)
        return (found,) if len(found) == count else None

    return (await eventually(check))[0]


async def finish(client: Client, pod: Obj, exit_code: int) -> None:
    """Play the kubelet: the pod's container terminated with `exit_code`."""
    current = await client.get(POD, meta.name(pod), "default")
    now = meta.now_rfc3339()
    current["status"] = {
        **current["status"],
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": "main",
                "image": "busybox",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": exit_code, "startedAt": now, "finishedAt": now}
                },
            }
        ],
    }
    await client.update(POD, current, subresource="status")


async def wait_condition(client: Client, type_: str) -> Obj:
    async def check() -> Obj | None:
        current = await client.get(JOB, "pi", "default")
        for cond in current.get("status", {}).get("conditions") or ():
            if cond["type"] == type_ and cond["status"] == "True":
                return current
        return None

    return await eventually(check)


async def event_messages(client: Client, reason: str) -> list[str]:
    items = (await client.list(EVENT, "default"))["items"]
    return sorted(e["message"] for e in items if e["reason"] == reason)


async def test_completions_with_parallelism(
    client: Client, informers: SharedInformerFactory
) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        created = await client.create(JOB, job(completions=3, parallelism=2))
        pods = await wait_live(client, 2)
        pod = pods[0]
        assert FINALIZER in pod["metadata"]["finalizers"]
        assert pod["metadata"]["generateName"] == "pi-"
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
        assert pod["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

        async def active_two() -> bool:
            status = (await client.get(JOB, "pi", "default")).get("status") or {}
            return status.get("active") == 2 and bool(status.get("startTime"))

        await eventually(active_two)
        for p in pods:
            await finish(client, p, 0)
        last = await wait_live(client, 1)
        await finish(client, last[0], 0)

        done = await wait_condition(client, "Complete")
        status = done["status"]
        assert status["succeeded"] == 3, repr(status)
        assert status.get("failed", 0) == 0
        assert status["active"] == 0
        assert status["completionTime"]
        assert "uncountedTerminatedPods" not in status or status["uncountedTerminatedPods"] == {}
        types = [c["type"] for c in status["conditions"]]
        assert types == ["SuccessCriteriaMet", "Complete"]
        complete = status["conditions"][1]
        assert complete["reason"] == "CompletionsReached"
        assert complete["message"] == "Reached expected number of succeeded pods"

        # Counted pods lose their finalizer.
        async def released() -> bool:
            items = (await client.list(POD, "default"))["items"]
            return all(FINALIZER not in (p["metadata"].get("finalizers") or ()) for p in items)

        await eventually(released)

        async def events() -> bool:
            created_msgs = await event_messages(client, "SuccessfulCreate")
            return len(created_msgs) == 3 and await event_messages(client, "Completed") == [
                "Job completed"
            ]

        await eventually(events)
        assert all(
            m.startswith("Created pod: pi-")
            for m in await event_messages(client, "SuccessfulCreate")
        )


async def test_backoff_limit_fails_the_job(
    client: Client, informers: SharedInformerFactory
) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(backoffLimit=1))
        first = await wait_live(client, 1)
        await finish(client, first[0], 1)

        async def replacement() -> list[Obj] | None:
            found = await live_pods(client)
            return (
                found
                if found and found[0]["metadata"]["uid"] != first[0]["metadata"]["uid"]
                else None
            )

        second = await eventually(replacement)
        await finish(client, second[0], 1)
        failed = await wait_condition(client, "Failed")
        status = failed["status"]
        assert status["failed"] == 2
        conditions = {c["type"]: c for c in status["conditions"]}
        assert set(conditions) == {"FailureTarget", "Failed"}
        assert conditions["Failed"]["reason"] == "BackoffLimitExceeded"
        assert conditions["Failed"]["message"] == "Job has reached the specified backoff limit"
        assert "completionTime" not in status

        async def event() -> bool:
            return await event_messages(client, "BackoffLimitExceeded") == [
                "Job has reached the specified backoff limit"
            ]

        await eventually(event)


async def test_indexed_job(client: Client, informers: SharedInformerFactory) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(completions=3, parallelism=3, completionMode="Indexed"))
        pods = await wait_live(client, 3)
        by_index = {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p
            for p in pods
        }
        assert sorted(by_index) == ["0", "1", "2"]
        one = by_index["1"]
        assert one["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
        assert one["spec"]["hostname"] == "pi-1"
        assert one["metadata"]["generateName"] == "pi-1-"
        env = one["spec"]["containers"][0]["env"]
        assert env[0]["name"] == "JOB_COMPLETION_INDEX"

        await finish(client, by_index["0"], 0)
        await finish(client, by_index["2"], 0)

        async def partial() -> bool:
            status = (await client.get(JOB, "pi", "default")).get("status") or {}
            return status.get("completedIndexes") == "0,2" and status.get("succeeded") == 2

        await eventually(partial)
        await finish(client, by_index["1"], 0)
        done = await wait_condition(client, "Complete")
        assert done["status"]["completedIndexes"] == "0-2"


async def test_failed_index_is_recreated_with_the_same_index(
    client: Client, informers: SharedInformerFactory
) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(completions=2, parallelism=2, completionMode="Indexed"))
        pods = await wait_live(client, 2)
        victim = next(
            p
            for p in pods
            if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
        )
        await finish(client, victim, 3)

        async def recreated() -> Obj | None:
            for p in await live_pods(client):
                ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                if ix == "1" and p["metadata"]["uid"] != victim["metadata"]["uid"]:
                    return p
            return None

        await eventually(recreated)
        status = (await client.get(JOB, "pi", "default"))["status"]
        assert status.get("failed") == 1


async def test_active_deadline(client: Client, informers: SharedInformerFactory) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(activeDeadlineSeconds=30, parallelism=2, completions=2))
        await wait_live(client, 2)
        # Thirty seconds pass for the controller.
        c.now = lambda: time.time() + 31
        await client.patch(JOB, "pi", {"metadata": {"labels": {"poke": "1"}}}, "default")
        failed = await wait_condition(client, "Failed")
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
        assert cond["reason"] == "DeadlineExceeded"
        assert cond["message"] == "Job was active longer than specified deadline"
        assert failed["status"]["active"] == 0
        assert await live_pods(client) == []


async def test_suspend_and_resume(client: Client, informers: SharedInformerFactory) -> None:
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(suspend=True, parallelism=2, completions=2))

        async def suspended() -> Obj | None:
            current = await client.get(JOB, "pi", "default")
            conds = current.get("status", {}).get("conditions") or []
            return current if any(c["type"] == "Suspended" for c in conds) else None

        current = await eventually(suspended)
        cond = current["status"]["conditions"][0]
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "True",
            "JobSuspended",
            "Job suspended",
        )
        assert "startTime" not in current["status"]
        assert await live_pods(client) == []

        await client.patch(JOB, "pi", {"spec": {"suspend": False}}, "default")
        await wait_live(client, 2)

        async def resumed() -> Obj | None:
            current = await client.get(JOB, "pi", "default")
            conds = current.get("status", {}).get("conditions") or []
            ok = any(c["type"] == "Suspended" and c["status"] == "False" for c in conds)
            return current if ok and current["status"].get("startTime") else None

        current = await eventually(resumed)
        cond = current["status"]["conditions"][0]
        assert (cond["reason"], cond["message"]) == ("JobResumed", "Job resumed")

        # Suspending again removes the pods without counting them as failed.
        await client.patch(JOB, "pi", {"spec": {"suspend": True}}, "default")
        await wait_live(client, 0)
        status = (await client.get(JOB, "pi", "default"))["status"]
        assert status.get("failed", 0) == 0


async def test_pod_failure_policy(client: Client, informers: SharedInformerFactory) -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
            },
        ]
    }
    c = controller(client, informers)
    async with running(informers, c):
        await client.create(JOB, job(backoffLimit=0, podFailurePolicy=policy))
        first = (await wait_live(client, 1))[0]
        await finish(client, first, 7)  # ignored: not counted, replaced

        async def replacement() -> Obj | None:
            found = await live_pods(client)
            return (
                found[0]
                if found and found[0]["metadata"]["uid"] != first["metadata"]["uid"]
                else None
            )

        second = await eventually(replacement)
        status = (await client.get(JOB, "pi", "default"))["status"]
        assert status.get("failed", 0) == 0
        await finish(client, second, 42)
        failed = await wait_condition(client, "Failed")
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
        assert cond["reason"] == "PodFailurePolicy"
        assert cond["message"] == (
            f"Container main for pod default/{second['metadata']['name']} failed with exit code 42 "
            "matching FailJob rule at index 1"
        )


async def test_ttl_after_finished_deletes_the_job(
    client: Client, informers: SharedInformerFactory
) -> None:
    ttl = TTLAfterFinishedController(client, informers)
    async with running(informers, ttl):
        created = await client.create(JOB, job(ttlSecondsAfterFinished=100))
        now = meta.now_rfc3339()
        created["status"] = {
            "startTime": now,
            "completionTime": now,
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now},
            ],
        }
        await client.update(JOB, created, subresource="status")

        async def still_there() -> bool:
            return ttl.queue.adds_total >= 1

        await eventually(still_there)
        assert (await client.get(JOB, "pi", "default"))["metadata"]["uid"]
        # A hundred seconds later, the Job goes.
        ttl.now = lambda: time.time() + 101
        await client.patch(JOB, "pi", {"metadata": {"labels": {"poke": "1"}}}, "default")

        async def gone() -> bool:
            return not (await client.list(JOB, "default"))["items"]

        await eventually(gone)
