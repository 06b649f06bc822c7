"""batch/v1 CronJob: a Job template run on a cron schedule.

As upstream: `SetDefaults_CronJob` (Allow, not suspended, keep 3 successful and
1 failed Jobs; the template's pod spec defaulted, its Job spec not), a
schedule in robfig/cron's syntax (`nanokube.api.cron`) with the zone in
`spec.timeZone` rather than a `TZ=` prefix, a name short enough for the
`-TIMESTAMP` suffix of its Jobs, and a Job template whose selector the Job
will generate.
"""

from __future__ import annotations

import re
from typing import Any

from nanokube.api import cron
from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import age, get_path
from nanokube.api.resources import apps_common as c
from nanokube.api.resources.batch_job import default_job_spec_template, job_spec_causes

Obj = dict[str, Any]

CRONJOB_NAME_MAX = 52  # a Job name (63) minus the 11 characters of `-TIMESTAMP`
_TZ_PART = re.compile(r"^[A-Za-z\.\-_0-9+]{1,14}$")
_SELECTOR = Column(
    "Selector", priority=1, description="A label query over pods that should match the pod count."
)


# --- CronJob -------------------------------------------------------------------------


def default_cron_job(obj: Obj) -> None:
    """`SetDefaults_CronJob`; the job template's pod spec is defaulted, its Job spec is not."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = get_path(spec, ("jobTemplate", "spec"))
    if isinstance(job_spec, dict):
        default_job_spec_template(job_spec)


def schedule_causes(schedule: str, time_zone: str | None, allow_tz: bool = False) -> list[Cause]:
    """`validateScheduleFormat`: robfig's parse error, and no `TZ=` next to (or instead of) timeZone."""
    path = "spec.schedule"
    causes = []
    try:
        cron.parse(schedule)
    except cron.CronError as err:
        causes.append(v.invalid(path, schedule, str(err)))
    if allow_tz and "TZ" in schedule and time_zone is not None:
        causes.append(
            v.invalid(
                path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"
            )
        )
    elif not allow_tz and "TZ" in schedule:
        causes.append(
            v.invalid(
                path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            )
        )
    return causes


def time_zone_causes(time_zone: Any) -> list[Cause]:
    """`validateTimeZone`: an IANA zone name this machine knows, never `Local`."""
    path = "spec.timeZone"
    if time_zone is None:
        return []
    if time_zone == "":
        return [v.invalid(path, time_zone, "timeZone must be nil or non-empty string")]
    for part in time_zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [v.invalid(path, time_zone, f"unknown time zone {time_zone}")]
    causes = []
    if time_zone.lower() == "local":
        causes.append(
            v.invalid(
                path,
                time_zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )
        )
    try:
        cron.load_zone(time_zone)
    except cron.CronError as err:
        causes.append(v.invalid(path, time_zone, str(err)))
    return causes


def _cron_job_spec_causes(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    schedule = spec.get("schedule")
    if schedule == "":
        causes.append(v.required("spec.schedule"))
    elif isinstance(schedule, str):
        causes += schedule_causes(schedule, spec.get("timeZone"))
    causes += c.non_negative_fields(spec, "spec", "startingDeadlineSeconds")
    causes += time_zone_causes(spec.get("timeZone"))
    policy = spec.get("concurrencyPolicy") or ""
    if policy == "":
        causes.append(v.required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        causes.append(
            v.not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"])
        )
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    causes += v.label_causes(tmeta.get("labels"), "spec.jobTemplate.metadata.labels")
    causes += v.annotation_causes(tmeta.get("annotations"), "spec.jobTemplate.metadata.annotations")
    job_spec = template.get("spec") or {}
    causes += job_spec_causes(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        causes.append(
            c.invalid_go(
                "spec.jobTemplate.spec.selector",
                c.go_label_selector(job_spec["selector"]),
                "`selector` will be auto-generated",
            )
        )
    if job_spec.get("manualSelector"):
        causes.append(
            v.not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"])
        )
    return causes + c.non_negative_fields(
        spec, "spec", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"
    )


def validate_cron_job(obj: Obj) -> list[Cause]:
    """`ValidateCronJobCreate` (nanokube runs it on updates too; see the update rules)."""
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    causes += _cron_job_spec_causes(obj.get("spec") or {})
    name = get_path(obj, ("metadata", "name"), "")
    if len(name) > CRONJOB_NAME_MAX:
        causes.append(
            v.invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters")
        )
    return causes


def validate_cron_job_update(new: Obj, old: Obj) -> list[Cause]:
    return v.validate_object_meta_update(new, old)


def cron_job_row(obj: Obj, now: float | None = None) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    suspend = spec.get("suspend")
    job_spec = get_path(spec, ("jobTemplate", "spec")) or {}
    names, images = c.containers_and_images(get_path(job_spec, ("template", "spec")))
    last = status.get("lastScheduleTime")
    return [
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or []),
        age(last, now) if last else "<none>",
        age(get_path(obj, ("metadata", "creationTimestamp")), now),
        names,
        images,
        c.selector_string(job_spec.get("selector")) or "<none>",
    ]


CRON_JOB = Kind(
    group="batch",
    version="v1",
    kind="CronJob",
    plural="cronjobs",
    namespaced=True,
    short_names=("cj",),
    categories=("all",),
    subresources=("status",),
    has_status=True,
    defaults=default_cron_job,
    validate=validate_cron_job,
    validate_update=validate_cron_job_update,
    columns=(
        Column(
            "Schedule",
            description="The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        ),
        Column(
            "Timezone",
            description="The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
        ),
        Column(
            "Suspend",
            "boolean",
            description="This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
        ),
        Column("Active", "integer", description="A list of pointers to currently running jobs."),
        Column(
            "Last Schedule",
            description="Information when was the last time the job was successfully scheduled.",
        ),
        c.AGE,
        c.CONTAINERS,
        c.IMAGES,
        _SELECTOR,
    ),
    row=cron_job_row,
    schema_name="io.k8s.api.batch.v1.CronJob",
)
