"""Pure rules of the Job controller: pod failure policy, completion indexes, back-off.

No I/O (upstream's `pod_failure_policy.go`, `indexed_job_utils.go`,
`backoff_utils.go`), so `job.py` reads as the sequence of steps of a sync.

- Pod failure policy: the first rule matching a failed pod decides:
  `FailJob` fails the Job with a message naming the container and exit code
  (or the pod condition), `Ignore` does not count the failure against
  `backoffLimit`, `Count` counts it, `FailIndex` fails the pod's index.
  `onExitCodes` look at terminated containers with a non-zero exit code.
- Completion indexes: an Indexed Job's pods carry their index in the
  `batch.kubernetes.io/job-completion-index` annotation and label;
  `status.completedIndexes` is written as intervals ("0-2,4").
- Back-off: a failed pod delays the next pod creation by 10 s doubling with
  each further failure since the last success, capped at 6 minutes.
- Conditions (`ensureJobConditionStatus`: a False condition is never added,
  only updated) and `SyncContext`, what one sync knows about a Job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.meta import parse_time

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
# upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0


# -- pods -------------------------------------------------------------------


def has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or ())


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def only_replace_failed(job: Obj) -> bool:
    """`podReplacementPolicy: Failed` (implied by a pod failure policy)."""
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """Failed, or (unless only failed pods are replaced) deleted before it succeeded."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def is_terminating(pod: Obj) -> bool:
    """`controller.CountTerminatingPods`: being deleted and not yet finished."""
    deleting = (pod.get("metadata") or {}).get("deletionTimestamp")
    return bool(deleting) and phase(pod) not in ("Succeeded", "Failed")


def finish_time(pod: Obj, now: float) -> float:
    """When the pod finished: its last container's end, its deletion, else `now`."""
    ends = [
        parse_time(t)
        for s in (pod.get("status") or {}).get("containerStatuses") or ()
        if (t := ((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
    ]
    if ends:
        return max(ends)
    deleted = (pod.get("metadata") or {}).get("deletionTimestamp")
    return parse_time(deleted) if deleted else now


def restart_count(pod: Obj) -> int:
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    return sum(int(s.get("restartCount") or 0) for s in statuses)


# -- pod failure policy ------------------------------------------------------------


@dataclass(frozen=True)
class PolicyMatch:
    """What the pod failure policy says of one failed pod."""

    action: str | None  # the matching rule's action, None when no rule matched
    count: bool  # counts against backoffLimit
    fail_job_message: str | None = None


def _matching_container(pod: Obj, requirement: Obj) -> Obj | None:
    status = pod.get("status") or {}
    name = requirement.get("containerName")
    values = set(requirement.get("values") or ())
    for cs in [
        *(status.get("containerStatuses") or ()),
        *(status.get("initContainerStatuses") or ()),
    ]:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is None or (name and cs.get("name") != name):
            continue
        code = int(terminated.get("exitCode") or 0)
        if code == 0:
            continue
        if (requirement.get("operator") == "In") == (code in values):
            return cs
    return None


def _matching_condition(pod: Obj, patterns: list[Obj]) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        for pattern in patterns:
            if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                "status", "True"
            ):
                return dict(cond)
    return None


def match_failure_policy(job: Obj, pod: Obj) -> PolicyMatch:
    """`matchPodFailurePolicy`: the first rule that matches the failed pod decides."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy:
        return PolicyMatch(None, True)
    md = pod.get("metadata") or {}
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        subject: str | None = None
        if rule.get("onExitCodes") is not None:
            cs = _matching_container(pod, rule["onExitCodes"])
            if cs is not None:
                code = cs["state"]["terminated"].get("exitCode")
                subject = f"Container {cs.get('name')} for pod {md.get('namespace')}/{md.get('name')} failed with exit code {code}"
        elif rule.get("onPodConditions") is not None:
            cond = _matching_condition(pod, rule["onPodConditions"])
            if cond is not None:
                subject = (
                    f"Pod {md.get('namespace')}/{md.get('name')} has condition {cond.get('type')}"
                )
        if subject is None:
            continue
        if action == "Ignore":
            return PolicyMatch(action, False)
        if action == "FailJob":
            message = f"{subject} matching FailJob rule at index {index}"
            return PolicyMatch(action, True, message)
        return PolicyMatch(action, True)  # Count, FailIndex
    return PolicyMatch(None, True)


# -- completion indexes ------------------------------------------------------------


def completion_index(pod: Obj) -> int | None:
    """The pod's index from its annotation, or None when missing or malformed."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)
    if value is None or not value.isdigit():
        return None
    return int(value)


def valid_index(pod: Obj, completions: int) -> int | None:
    ix = completion_index(pod)
    return ix if ix is not None and ix < completions else None


def parse_indexes(text: str | None, completions: int) -> set[int]:
    """ "0-2,4" → {0, 1, 2, 4}, dropping indexes at or beyond `completions`."""
    found: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            continue
        found.update(range(first, min(last, completions - 1) + 1))
    return found


def format_indexes(indexes: set[int]) -> str:
    """{0, 1, 2, 4} → "0-2,4" (upstream's orderedIntervals.String)."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def index_failure_count(pod: Obj) -> int:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_FAILURE_COUNT, "0")
    return int(value) if str(value).isdigit() else 0


# -- back-off ---------------------------------------------------------------------


@dataclass
class BackoffRecord:
    """`backoffRecord`: failures since the last success and when the last one happened."""

    failures_after_last_success: int = 0
    last_failure_time: float = 0.0

    def next_record(
        self, new_succeeded: list[Obj], new_failed: list[Obj], now: float
    ) -> BackoffRecord:
        """The record after counting newly finished pods (`newBackoffRecord`)."""
        if not new_succeeded:
            if not new_failed:
                return self
            last = max(finish_time(p, now) for p in new_failed)
            return BackoffRecord(
                self.failures_after_last_success + len(new_failed),
                max(last, self.last_failure_time),
            )
        last_success = max(finish_time(p, now) for p in new_succeeded)
        after = [finish_time(p, now) for p in new_failed if finish_time(p, now) > last_success]
        return BackoffRecord(len(after), max(after) if after else 0.0)

    def remaining(self, base: float, cap: float, now: float | None = None) -> float:
        """Seconds before the next pod may be created (`getRemainingTime`)."""
        if self.failures_after_last_success == 0:
            return 0.0
        delay = min(base * 2 ** (self.failures_after_last_success - 1), cap)
        left = self.last_failure_time + delay - (time.time() if now is None else now)
        return max(left, 0.0)


# -- conditions and the sync context -------------------------------------------------


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def condition(type: str, reason: str, message: str, now: float, status: str = "True") -> Obj:
    stamp = rfc3339(now)
    return {
        "type": type,
        "status": status,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def find_condition(job: Obj, type: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type:
            return dict(cond)
    return None


def finished_as(job: Obj) -> str:
    """`IsJobFinished` and how: "Complete" or "Failed" (a True condition), "" while running."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return ""


def is_finished(job: Obj) -> bool:
    """`IsJobFinished`: a Complete or Failed condition that is True."""
    return bool(finished_as(job))


def ensure_condition(
    conditions: list[Obj], type: str, status: str, reason: str, message: str, now: float
) -> bool:
    """`ensureJobConditionStatus` (in place): True when the list changed."""
    for i, cond in enumerate(conditions):
        if cond.get("type") == type:
            if (cond.get("status"), cond.get("reason"), cond.get("message")) == (
                status,
                reason,
                message,
            ):
                return False
            conditions[i] = condition(type, reason, message, now, status)
            return True
    if status == "False":
        return False
    conditions.append(condition(type, reason, message, now, status))
    return True


@dataclass
class SyncContext:
    """What one sync knows about a Job and its pods (upstream's syncJobCtx)."""

    job: Obj
    pods: list[Obj]
    active: list[Obj]
    ready: int
    terminating: int
    succeeded: int = 0
    failed: int = 0
    finished: Obj | None = None  # the condition the Job is heading to
    uncounted_succeeded: set[str] = field(default_factory=set)
    uncounted_failed: set[str] = field(default_factory=set)
    expected_removals: set[str] = field(default_factory=set)
    prev_succeeded_indexes: set[int] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)
    new_backoff: BackoffRecord = field(default_factory=BackoffRecord)
