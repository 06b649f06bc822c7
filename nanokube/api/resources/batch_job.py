"""batch/v1 Job.

As upstream (`pkg/apis/batch/v1/defaults.go`, `pkg/apis/batch/validation`,
`pkg/registry/batch/job/strategy.go`, the printers):

- a Job is defaulted to one completion at parallelism one, six retries,
  `NonIndexed`, not suspended, `manualSelector: false` and pods replaced once
  terminating or failed; on create (`prepare_job_create`) it gets a generated
  selector on `batch.kubernetes.io/controller-uid` and its template the labels
  `controller-uid`, `batch.kubernetes.io/controller-uid`, `job-name` and
  `batch.kubernetes.io/job-name`, unless `manualSelector` is true;
- a Job's pods must restart `Never` or `OnFailure`, and its template, selector,
  completions and completion mode are immutable, except that a suspended Job
  that never started may change its pods' scheduling directives.

nanokube's API server validates before it runs `prepare_create`, so the checks
that need the generated selector are skipped while it is still absent (it is
then generated, and so consistent, by construction).
"""

from __future__ import annotations

import copy
from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import age, get_path, human_duration, parse_time
from nanokube.api.resources import apps_common as c
from nanokube.api.resources.pod import default_pod_spec, validate_pod_template

Obj = dict[str, Any]

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
MAX_PARALLELISM_INDEXED = 100_000

_SELECTOR = Column(
    "Selector", priority=1, description="A label query over pods that should match the pod count."
)


# --- Job -----------------------------------------------------------------------------


def default_job_spec_template(spec: Obj) -> None:
    pod_spec = get_path(spec, ("template", "spec"))
    if isinstance(pod_spec, dict):
        default_pod_spec(pod_spec)


def default_job(obj: Obj) -> None:
    """`SetDefaults_Job`."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    labels = get_path(spec, ("template", "metadata", "labels"))
    meta = obj.setdefault("metadata", {})
    if labels is not None and not meta.get("labels"):
        meta["labels"] = dict(labels)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    failure_policy = spec.get("podFailurePolicy")
    if isinstance(failure_policy, dict):
        for rule in failure_policy.get("rules") or []:
            for pattern in rule.get("onPodConditions") or []:
                if not pattern.get("status"):
                    pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = (
            "Failed" if failure_policy is not None else "TerminatingOrFailed"
        )
    default_job_spec_template(spec)


def prepare_job_create(obj: Obj) -> None:
    """`generateSelector`: label the template with the Job's name and uid, select the uid."""
    spec = obj.get("spec") or {}
    if spec.get("manualSelector"):
        return
    meta = obj.get("metadata") or {}
    template = spec.setdefault("template", {})
    tmeta = template.get("metadata")
    if not isinstance(tmeta, dict):
        tmeta = template["metadata"] = {}
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, meta.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, meta.get("uid", ""))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if not isinstance(match, dict):
        match = selector["matchLabels"] = {}
    match.setdefault(CONTROLLER_UID_LABEL, meta.get("uid", ""))


def _has_label(labels: Obj, key: str, expected: str) -> list[Cause]:
    """`ValidateHasLabel` on the template's metadata."""
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [v.required(path, expected)]
    if labels[key] != expected:
        return [c.invalid_go(path, c.go_string_map(labels), f"must be '{expected}'")]
    return []


def _generated_selector_causes(obj: Obj) -> list[Cause]:
    """`validateGeneratedSelector`: an automatic selector must be the one generated."""
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    if spec.get("manualSelector") or spec.get("selector") is None:
        return []
    uid, name = meta.get("uid", ""), meta.get("name", "")
    causes = [] if uid else [v.required("metadata.uid")]
    labels = get_path(spec, ("template", "metadata", "labels")) or {}
    causes += _has_label(labels, LEGACY_CONTROLLER_UID_LABEL, uid)
    causes += _has_label(labels, LEGACY_JOB_NAME_LABEL, name)
    causes += _has_label(labels, CONTROLLER_UID_LABEL, uid)
    causes += _has_label(labels, JOB_NAME_LABEL, name)
    if not c.selector_matches(spec.get("selector"), {CONTROLLER_UID_LABEL: uid}):
        causes.append(
            c.invalid_go(
                "spec.selector",
                c.go_label_selector(spec["selector"]),
                "`selector` not auto-generated",
            )
        )
    return causes


def job_spec_causes(spec: Obj, path: str) -> list[Cause]:
    """`validateJobSpec`: counts, completion mode, replacement policy, template, restart policy."""
    causes = c.non_negative_fields(
        spec,
        path,
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    )
    mode = spec.get("completionMode")
    per_index = spec.get("backoffLimitPerIndex")
    if per_index is not None:
        causes += v.non_negative(f"{path}.backoffLimitPerIndex", per_index)
        if mode != "Indexed":
            causes.append(
                v.forbidden(f"{path}.backoffLimitPerIndex", "requires indexed completion mode")
            )
    max_failed = spec.get("maxFailedIndexes")
    if max_failed is not None:
        causes += v.non_negative(f"{path}.maxFailedIndexes", max_failed)
        if per_index is None:
            causes.append(
                v.required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified")
            )
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        causes.append(v.not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed":
        if spec.get("completions") is None:
            causes.append(v.required(f"{path}.completions", "when completion mode is Indexed"))
        parallelism = spec.get("parallelism")
        if isinstance(parallelism, int) and parallelism > MAX_PARALLELISM_INDEXED:
            causes.append(
                v.invalid(
                    f"{path}.parallelism",
                    parallelism,
                    f"must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed",
                )
            )
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if spec.get("podFailurePolicy") is not None:
            if replacement != "Failed":
                causes.append(
                    v.not_supported(f"{path}.podReplacementPolicy", replacement, ["Failed"])
                )
        elif replacement not in ("Failed", "TerminatingOrFailed"):
            causes.append(
                v.not_supported(
                    f"{path}.podReplacementPolicy", replacement, ["Failed", "TerminatingOrFailed"]
                )
            )
    causes += validate_pod_template(spec.get("template") or {}, f"{path}.template")
    restart = get_path(spec, ("template", "spec", "restartPolicy"), "")
    rpath = f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        causes.append(v.required(rpath, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        causes.append(v.not_supported(rpath, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        causes.append(
            v.invalid(
                rpath, restart, 'only "Never" is supported when podFailurePolicy is specified'
            )
        )
    return causes


def validate_job(obj: Obj) -> list[Cause]:
    """`ValidateJob`: metadata, the generated selector, and `ValidateJobSpec`."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    causes += _generated_selector_causes(obj)
    causes += job_spec_causes(spec, "spec")
    selector = spec.get("selector")
    if selector is None:
        if spec.get("manualSelector"):
            causes.append(v.required("spec.selector"))
        return causes  # otherwise prepare_job_create generates it
    causes += v.label_selector_causes(selector, "spec.selector")
    labels = get_path(spec, ("template", "metadata", "labels"))
    if not c.selector_matches(selector, labels):
        causes.append(
            c.invalid_go(
                "spec.template.metadata.labels", c.go_string_map(labels), c.SELECTOR_MISMATCH
            )
        )
    return causes


def _suspended_not_started(job: Obj) -> bool:
    return (
        bool(get_path(job, ("spec", "suspend"))) and get_path(job, ("status", "startTime")) is None
    )


def _template_for_comparison(new_tpl: Obj, old_tpl: Obj, mutable_scheduling: bool) -> Obj:
    """The old template with what a suspended, unstarted Job may change taken from the new one."""
    old = copy.deepcopy(old_tpl)
    if not mutable_scheduling:
        return old
    old_spec, new_spec = old.setdefault("spec", {}), new_tpl.get("spec") or {}
    new_aff, old_aff = new_spec.get("affinity"), old_spec.get("affinity")
    if new_aff is None and old_aff is not None:
        old_aff.pop("nodeAffinity", None)
        if not old_aff:
            old_spec.pop("affinity")
    elif new_aff is not None and old_aff is None:
        old_spec["affinity"] = (
            {"nodeAffinity": new_aff.get("nodeAffinity")} if "nodeAffinity" in new_aff else {}
        )
    elif new_aff is not None and old_aff is not None:
        if "nodeAffinity" in new_aff:
            old_aff["nodeAffinity"] = new_aff["nodeAffinity"]
        else:
            old_aff.pop("nodeAffinity", None)
    for key in ("nodeSelector", "tolerations", "schedulingGates"):
        old_spec.pop(key, None)
        if key in new_spec:
            old_spec[key] = new_spec[key]
    old_meta, new_meta = old.setdefault("metadata", {}), new_tpl.get("metadata") or {}
    for key in ("annotations", "labels"):
        old_meta.pop(key, None)
        if key in new_meta:
            old_meta[key] = new_meta[key]
    return old


def _immutable(path: str, new: Any, old: Any) -> list[Cause]:
    return [] if new == old else [v.immutable(path, new)]


def validate_job_update(new: Obj, old: Obj) -> list[Cause]:
    """`ValidateJobSpecUpdate`: what a running Job may no longer change."""
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    causes = v.validate_object_meta_update(new, old)
    indexed = ns.get("completionMode") == "Indexed"
    if ns.get("completions") != os_.get("completions"):
        if not indexed:
            causes.append(v.immutable("spec.completions", ns.get("completions")))
        elif ns.get("completions") is not None and ns.get("completions") != ns.get("parallelism"):
            causes.append(
                v.invalid(
                    "spec.completions",
                    ns.get("completions"),
                    "can only be modified in tandem with spec.parallelism",
                )
            )
    causes += c.immutable_selector(new, old)
    new_tpl, old_tpl = ns.get("template") or {}, os_.get("template") or {}
    if new_tpl != _template_for_comparison(new_tpl, old_tpl, _suspended_not_started(old)):
        causes.append(v.immutable("spec.template", new_tpl))
    for key in (
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ):
        causes += _immutable(f"spec.{key}", ns.get(key), os_.get(key))
    return causes


def _condition_true(obj: Obj, kind: str) -> bool:
    return any(
        cond.get("type") == kind and cond.get("status") == "True"
        for cond in get_path(obj, ("status", "conditions"), []) or []
    )


def job_status(obj: Obj) -> str:
    """The STATUS cell, in upstream's order of precedence."""
    for kind in ("Complete", "Failed"):
        if _condition_true(obj, kind):
            return kind
    if get_path(obj, ("metadata", "deletionTimestamp")):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(obj, kind):
            return kind
    return "Running"


def job_row(obj: Obj, now: float | None = None) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if status.get("startTime"):
        if status.get("completionTime"):
            duration = human_duration(
                int(parse_time(status["completionTime"]) - parse_time(status["startTime"]))
            )
        else:
            duration = age(status["startTime"], now)
    return [job_status(obj), completions, duration, *c.template_cells(obj, now)]


JOB = Kind(
    group="batch",
    version="v1",
    kind="Job",
    plural="jobs",
    namespaced=True,
    categories=("all",),
    subresources=("status",),
    has_status=True,
    defaults=default_job,
    prepare_create=prepare_job_create,
    validate=validate_job,
    validate_update=validate_job_update,
    columns=(
        Column("Status", description="Status of the job."),
        Column("Completions", description="The number of pods which reached phase Succeeded."),
        Column("Duration", description="Time required to complete the job."),
        c.AGE,
        c.CONTAINERS,
        c.IMAGES,
        _SELECTOR,
    ),
    row=job_row,
    field_selectors={"status.successful": lambda o: str(get_path(o, ("status", "succeeded"), 0))},
    schema_name="io.k8s.api.batch.v1.Job",
)
