"""apps/v1 StatefulSet: ordered, stably named pods with their own volume claims.

Defaults, validation and printer as upstream's (see `apps` for the shared
approach). What sets it apart: its name is a DNS label (pods are NAME-ORDINAL),
its claim templates get PVC defaults, and an update may change only the
fields upstream lists (`_STS_MUTABLE`), which leaves the selector immutable.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind, Scale
from nanokube.api.meta import get_path
from nanokube.api.resources import apps_common as c

Obj = dict[str, Any]


# --- StatefulSet ---------------------------------------------------------------------

_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
_STS_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
    "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
    "'minReadySeconds' are forbidden"
)


def default_stateful_set(obj: Obj) -> None:
    """`SetDefaults_StatefulSet`, and the PVC defaults its claim templates get."""
    spec = c.ensure_spec(obj)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        strategy = spec["updateStrategy"] = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        if not isinstance(strategy.get("rollingUpdate"), dict):
            strategy["rollingUpdate"] = {}
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if not isinstance(policy, dict):
        policy = spec["persistentVolumeClaimRetentionPolicy"] = {}
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            claim_spec = claim.setdefault("spec", {})
            if isinstance(claim_spec, dict):
                claim_spec.setdefault("volumeMode", "Filesystem")
            status = claim.setdefault("status", {})
            if isinstance(status, dict):
                status.setdefault("phase", "Pending")
    c.default_template(spec)


def _sts_strategy_causes(strategy: Obj) -> list[Cause]:
    path = "spec.updateStrategy"
    kind = strategy.get("type") or ""
    rolling = strategy.get("rollingUpdate")
    if kind == "":
        return [v.required(path)]
    if kind == "OnDelete":
        if rolling is not None:
            return [
                v.invalid(
                    f"{path}.rollingUpdate",
                    rolling,
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [v.invalid(path, strategy, "must be 'RollingUpdate' or 'OnDelete'")]
    if not isinstance(rolling, dict):
        return []
    causes = v.non_negative(f"{path}.rollingUpdate.partition", rolling.get("partition"))
    if "maxUnavailable" in rolling:
        mu = rolling["maxUnavailable"]
        causes += c.positive_int_or_percent(f"{path}.rollingUpdate.maxUnavailable", mu)
        if c.int_or_percent_value(mu)[0] == 0:
            causes.append(
                c.invalid_go(
                    f"{path}.rollingUpdate.maxUnavailable",
                    c.go_int_or_string(mu),
                    "must be greater than 0",
                )
            )
        causes += c.not_more_than_100_percent(f"{path}.rollingUpdate.maxUnavailable", mu)
    return causes


def validate_stateful_set(obj: Obj) -> list[Cause]:
    """`ValidateStatefulSet`: a DNS-label name (pods are NAME-ORDINAL), policy, strategy, template."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_label)
    policy = spec.get("podManagementPolicy") or ""
    if policy == "":
        causes.append(v.required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        causes.append(
            v.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'")
        )
    causes += _sts_strategy_causes(spec.get("updateStrategy") or {})
    causes += c.non_negative_fields(spec, "spec", "revisionHistoryLimit", "replicas")
    causes += v.non_negative("spec.ordinals.start", get_path(spec, ("ordinals", "start")))
    causes += c.selector_causes(spec, "spec", "statefulset")
    causes += c.template_labels_cause(spec, "spec") + c.template_causes(spec)
    causes += c.restart_always_causes(spec, "spec")
    if get_path(spec, ("template", "spec", "activeDeadlineSeconds")) is not None:
        causes.append(
            v.forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in StatefulSet is not Supported",
            )
        )
    causes += c.non_negative_fields(spec, "spec", "minReadySeconds")
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        if retention.get(key) not in ("Retain", "Delete"):
            causes.append(
                v.not_supported(
                    f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                    retention.get(key),
                    ["Retain", "Delete"],
                )
            )
    service = spec.get("serviceName")
    if service:
        causes += [v.invalid("spec.serviceName", service, m) for m in v.dns1035_label(service)]
    return causes


def _significant(spec: Obj) -> Obj:
    return {
        k: val for k, val in spec.items() if k not in _STS_MUTABLE and val not in (None, [], {})
    }


def validate_stateful_set_update(new: Obj, old: Obj) -> list[Cause]:
    """Only the fields in `_STS_MUTABLE` may change; the selector is one of the others."""
    causes = c.meta_update(new, old)
    if _significant(new.get("spec") or {}) != _significant(old.get("spec") or {}):
        causes.append(v.forbidden("spec", _STS_FORBIDDEN))
    return causes


def stateful_set_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = c.containers_and_images(get_path(spec, ("template", "spec")))
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        c.creation_age(obj),
        names,
        images,
    ]


STATEFUL_SET = Kind(
    group="apps",
    version="v1",
    kind="StatefulSet",
    plural="statefulsets",
    namespaced=True,
    short_names=("sts",),
    categories=("all",),
    subresources=("status", "scale"),
    has_status=True,
    defaults=default_stateful_set,
    validate=validate_stateful_set,
    validate_update=validate_stateful_set_update,
    columns=(
        Column("Ready", description="Number of the pod with ready state"),
        c.AGE,
        c.CONTAINERS,
        c.IMAGES,
    ),
    row=stateful_set_row,
    scale=Scale(),
    schema_name="io.k8s.api.apps.v1.StatefulSet",
)
