"""batch/v1 declarations: Job defaults and generated selector, restart policy and
immutability rules, CronJob schedule and time-zone validation, table cells."""

import copy
from typing import Any

from nanokube.api.meta import parse_time
from nanokube.api.resources import batch, batch_cronjob, batch_job

Obj = dict[str, Any]
JOB, CRON_JOB = batch.KINDS


def job(restart: str | None = "Never") -> Obj:
    pod: Obj = {"containers": [{"name": "pi", "image": "perl"}]}
    if restart:
        pod["restartPolicy"] = restart
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "1234-abcd"},
        "spec": {"template": {"spec": pod}},
    }


def created(obj: Obj) -> Obj:
    """As the server does it: defaults, validation, then prepare_create."""
    JOB.defaults(obj)
    assert JOB.validate(obj) == [], [c.message for c in JOB.validate(obj)]
    JOB.prepare_create(obj)
    assert JOB.validate(obj) == []
    return obj


def messages(causes: list[Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


# --- Job -----------------------------------------------------------------------------


def test_job_defaults() -> None:
    j = job()
    JOB.defaults(j)
    spec = j["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False and spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"


def test_job_defaults_with_parallelism_only_and_per_index_limit() -> None:
    j = job()
    j["spec"].update(parallelism=3, completionMode="Indexed", backoffLimitPerIndex=1)
    JOB.defaults(j)
    assert "completions" not in j["spec"]
    assert j["spec"]["backoffLimit"] == 2147483647
    assert messages(JOB.validate(j)) == [
        "spec.completions: Required value: when completion mode is Indexed"
    ]


def test_generated_selector_and_labels() -> None:
    j = created(job())
    assert j["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": "1234-abcd"}
    }
    assert j["spec"]["template"]["metadata"]["labels"] == {
        "controller-uid": "1234-abcd",
        "batch.kubernetes.io/controller-uid": "1234-abcd",
        "job-name": "pi",
        "batch.kubernetes.io/job-name": "pi",
    }


def test_template_labels_become_job_labels() -> None:
    j = job()
    j["spec"]["template"]["metadata"] = {"labels": {"app": "pi"}}
    created(j)
    assert j["metadata"]["labels"] == {"app": "pi"}


def test_manual_selector_must_be_given_and_match() -> None:
    j = job()
    j["spec"]["manualSelector"] = True
    JOB.defaults(j)
    assert messages(JOB.validate(j)) == ["spec.selector: Required value"]
    j["spec"]["selector"] = {"matchLabels": {"app": "x"}}
    assert messages(JOB.validate(j)) == [
        "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`"
    ]
    JOB.prepare_create(j)
    assert "labels" not in j["spec"]["template"].get("metadata", {})  # manual: nothing generated


def test_wrong_generated_label_is_reported() -> None:
    j = created(job())
    j["spec"]["template"]["metadata"]["labels"]["job-name"] = "other"
    assert messages(JOB.validate(j))[0].startswith(
        'spec.template.metadata.labels[job-name]: Invalid value: map[string]string{"batch.kubernetes.io/controller-uid":'
    )
    assert messages(JOB.validate(j))[0].endswith(": must be 'pi'")


def test_restart_policy_must_be_never_or_on_failure() -> None:
    j = job(restart=None)
    JOB.defaults(j)  # the pod defaults make it Always
    assert messages(JOB.validate(j)) == [
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
    ]
    j = job(restart="Sometimes")
    JOB.defaults(j)
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never"'
        in (messages(JOB.validate(j)))
    )


def test_counts_are_non_negative() -> None:
    j = job()
    j["spec"].update(parallelism=-1, backoffLimit=-2)
    JOB.defaults(j)
    assert messages(JOB.validate(j)) == [
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
        "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
    ]


def test_template_and_selector_are_immutable() -> None:
    old = created(job())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:6"
    new["spec"]["selector"]["matchLabels"]["x"] = "y"
    fields = [c.field for c in JOB.validate_update(new, old)]
    assert fields == ["spec.selector", "spec.template"]
    assert JOB.validate_update(copy.deepcopy(old), old) == []


def test_suspended_job_may_change_scheduling_directives() -> None:
    old = created(job())
    old["spec"]["suspend"] = True
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    new["spec"]["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    assert JOB.validate_update(new, old) == []
    old["status"] = {"startTime": "2024-01-01T00:00:00Z"}  # it ran once: no longer
    assert [c.field for c in JOB.validate_update(new, old)] == ["spec.template"]


def test_completions_change_only_for_elastic_indexed_jobs() -> None:
    old = created(job())
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 3
    assert messages(JOB.validate_update(new, old)) == [
        "spec.completions: Invalid value: 3: field is immutable"
    ]
    old["spec"].update(completionMode="Indexed", completions=2, parallelism=2)
    new = copy.deepcopy(old)
    new["spec"].update(completions=4, parallelism=4)
    assert JOB.validate_update(new, old) == []


def test_job_status_and_row() -> None:
    j = created(job())
    j["status"] = {
        "succeeded": 1,
        "startTime": "2024-01-01T00:00:00Z",
        "completionTime": "2024-01-01T00:01:05Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    row = batch_job.job_row(j, now=parse_time("2024-01-01T01:00:00Z"))
    assert row == [
        "Complete",
        "1/1",
        "65s",
        "<unknown>",
        "pi",
        "perl",
        "batch.kubernetes.io/controller-uid=1234-abcd",
    ]
    j["status"] = {"startTime": "2024-01-01T00:00:00Z"}
    j["spec"].pop("completions")
    j["spec"]["parallelism"] = 3
    row = batch_job.job_row(j, now=parse_time("2024-01-01T00:03:00Z"))
    assert row[:3] == ["Running", "0/1 of 3", "3m"]
    j["metadata"]["deletionTimestamp"] = "2024-01-01T00:02:00Z"
    assert batch_job.job_status(j) == "Terminating"
    j["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert batch_job.job_status(j) == "Failed"
    assert [c.name for c in JOB.columns][:4] == ["Status", "Completions", "Duration", "Age"]
    assert JOB.field_selectors["status.successful"]({"status": {"succeeded": 2}}) == "2"
    assert JOB.categories == ("all",) and JOB.has_status


# --- CronJob -------------------------------------------------------------------------


def cron_job(schedule: str = "*/5 * * * *", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "c", "image": "busybox"}],
                            "restartPolicy": "OnFailure",
                        }
                    }
                }
            },
            **spec,
        },
    }


def cron_messages(obj: Obj) -> list[str]:
    CRON_JOB.defaults(obj)
    return messages(CRON_JOB.validate(obj))


def test_cron_job_defaults() -> None:
    cj = cron_job()
    assert cron_messages(cj) == []
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Allow" and spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    job_spec = spec["jobTemplate"]["spec"]
    assert "backoffLimit" not in job_spec  # the Job's own defaults wait for the Job
    assert job_spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_schedule_errors() -> None:
    assert cron_messages(cron_job("61 * * * *")) == [
        'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'
    ]
    assert cron_messages(cron_job("@often")) == [
        'spec.schedule: Invalid value: "@often": unrecognized descriptor: @often'
    ]
    assert cron_messages(cron_job("TZ=Europe/Paris 0 9 * * *")) == [
        'spec.schedule: Invalid value: "TZ=Europe/Paris 0 9 * * *": '
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    ]
    assert cron_messages(cron_job("@hourly")) == []
    assert cron_messages(cron_job("0 9 * * mon-fri", timeZone="Europe/Paris")) == []


def test_time_zone_errors() -> None:
    assert cron_messages(cron_job(timeZone="Mars/Olympus_Mons")) == [
        'spec.timeZone: Invalid value: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons'
    ]
    assert cron_messages(cron_job(timeZone="")) == [
        'spec.timeZone: Invalid value: "": timeZone must be nil or non-empty string'
    ]
    assert cron_messages(cron_job(timeZone="Local"))[0].endswith(
        "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
    )


def test_cron_job_template_and_name_rules() -> None:
    cj = cron_job(concurrencyPolicy="Sometimes")
    cj["metadata"]["name"] = "n" * 53
    cj["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    assert cron_messages(cj) == [
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
        'spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated",
        f'metadata.name: Invalid value: "{"n" * 53}": must be no more than 52 characters',
    ]


def test_cron_job_row() -> None:
    cj = cron_job(timeZone="Europe/Paris")
    CRON_JOB.defaults(cj)
    cj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    cj["status"] = {"active": [{"name": "tick-1"}], "lastScheduleTime": "2024-01-01T00:55:00Z"}
    row = batch_cronjob.cron_job_row(cj, now=parse_time("2024-01-01T01:00:00Z"))
    assert row == ["*/5 * * * *", "Europe/Paris", "False", 1, "5m", "60m", "c", "busybox", "<none>"]
    assert [c.name for c in CRON_JOB.columns][:6] == [
        "Schedule",
        "Timezone",
        "Suspend",
        "Active",
        "Last Schedule",
        "Age",
    ]
    assert CRON_JOB.short_names == ("cj",) and CRON_JOB.categories == ("all",)
