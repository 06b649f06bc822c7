"""LimitRange and ResourceQuota: the namespace policies the admission plugins enforce.

Only their declarations live here (defaults, validation, tables); enforcing
them is admission's work. A LimitRange has no printer upstream, so it prints
with the default table: NAME and CREATED AT.
"""

from __future__ import annotations

from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.resources.core_common import AGE, age_cell, spec_of, status_of
from nanokube.api.validators import (
    canonical_quantity,
    duplicate,
    forbidden,
    invalid,
    name_is_dns_subdomain,
    not_supported,
    parse_quantity,
    qualified_name,
    quantity_causes,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

LIMIT_TYPES = ("Pod", "Container", "PersistentVolumeClaim")
QUOTA_SCOPES = (
    "BestEffort",
    "CrossNamespacePodAffinity",
    "NotBestEffort",
    "NotTerminating",
    "PriorityClass",
    "Terminating",
    "VolumeAttributesClass",
)


# --- LimitRange ---------------------------------------------------------------------


def default_limit_range(lr: Obj) -> None:
    """`SetDefaults_LimitRangeItem`: a container's default limit falls back to max, its
    default request to the default limit, then to min."""
    for item in spec_of(lr).get("limits") or []:
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        request = dict(item.get("defaultRequest") or {})
        for key, value in (item.get("max") or {}).items():
            default.setdefault(key, value)
        for key, value in default.items():
            request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            request.setdefault(key, value)
        if default:
            item["default"] = default
        if request:
            item["defaultRequest"] = request


def _q(value: Any) -> str:
    try:
        return canonical_quantity(value)
    except ValueError:
        return str(value)


def _ordering_causes(item: Obj, path: str) -> list[Cause]:
    """min ≤ defaultRequest ≤ default ≤ max, key by key, with upstream's messages."""
    groups = {k: item.get(k) or {} for k in ("min", "max", "default", "defaultRequest")}
    causes: list[Cause] = []
    keys = set().union(*(g.keys() for g in groups.values()))
    checks = (
        ("min", "max", "min", "min value {a} is greater than max value {b}"),
        ("min", "defaultRequest", "defaultRequest", "min value {a} is greater than default request value {b}"),
        ("defaultRequest", "max", "defaultRequest", "default request value {a} is greater than max value {b}"),
        ("defaultRequest", "default", "defaultRequest", "default request value {a} is greater than default limit value {b}"),
        ("min", "default", "default", "min value {a} is greater than default value {b}"),
        ("default", "max", "default", "default value {a} is greater than max value {b}"),
    )  # fmt: skip
    for key in sorted(keys):
        for low, high, at, message in checks:
            a, b = groups[low].get(key), groups[high].get(key)
            if a is None or b is None:
                continue
            try:
                bigger = parse_quantity(a) > parse_quantity(b)
            except ValueError:
                continue
            if bigger:
                bad = groups[at][key]
                causes.append(
                    invalid(f"{path}.{at}[{key}]", _q(bad), message.format(a=_q(a), b=_q(b)))
                )
        ratio = (item.get("maxLimitRequestRatio") or {}).get(key)
        if ratio is not None:
            try:
                if parse_quantity(ratio) < 1:
                    causes.append(
                        invalid(
                            f"{path}.maxLimitRequestRatio[{key}]",
                            _q(ratio),
                            f"ratio {_q(ratio)} is less than 1",
                        )
                    )
            except ValueError:
                pass  # reported as a bad quantity
    return causes


def validate_limit_range(lr: Obj) -> list[Cause]:
    causes = validate_object_meta(lr, True, name_is_dns_subdomain)
    seen: set[str] = set()
    for i, item in enumerate(spec_of(lr).get("limits") or []):
        path = f"spec.limits[{i}]"
        kind = item.get("type", "")
        if "/" in kind:
            causes += [invalid(f"{path}.type", kind, m) for m in qualified_name(kind)]
        elif kind not in LIMIT_TYPES:
            causes.append(
                invalid(f"{path}.type", kind, "must be a standard limit type or fully qualified")
            )
        if kind in seen:
            causes.append(duplicate(f"{path}.type", kind))
        seen.add(kind)
        for group in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for name, value in (item.get(group) or {}).items():
                causes += quantity_causes(f"{path}.{group}[{name}]", value)
        if kind == "Pod":
            for group in ("default", "defaultRequest"):
                if item.get(group):
                    causes.append(
                        forbidden(f"{path}.{group}", "may not be specified when `type` is 'Pod'")
                    )
        causes += _ordering_causes(item, path)
    return causes


LIMIT_RANGE = Kind(
    group="",
    version="v1",
    kind="LimitRange",
    plural="limitranges",
    namespaced=True,
    short_names=("limits",),
    defaults=default_limit_range,
    validate=validate_limit_range,
    validate_update=lambda new, old: validate_object_meta_update(new, old) + validate_limit_range(new),
    columns=(Column("Created At", "date", description="CreationTimestamp is a timestamp representing the server time when this object was created."),),
    row=lambda lr: [(lr.get("metadata") or {}).get("creationTimestamp")],
    schema_name="io.k8s.api.core.v1.LimitRange",
)  # fmt: skip


# --- ResourceQuota ------------------------------------------------------------------


def prepare_quota_create(quota: Obj) -> None:
    quota["status"] = {}


def validate_resource_quota(quota: Obj) -> list[Cause]:
    causes = validate_object_meta(quota, True, name_is_dns_subdomain)
    spec = spec_of(quota)
    for section, values in (
        ("spec.hard", spec.get("hard")),
        ("status.hard", status_of(quota).get("hard")),
        ("status.used", status_of(quota).get("used")),
    ):
        for name, value in (values or {}).items():
            path = f"{section}[{name}]"
            causes += [invalid(path, name, m) for m in qualified_name(name)] if "/" in name else []
            causes += quantity_causes(path, value)
    for i, scope in enumerate(spec.get("scopes") or []):
        if scope not in QUOTA_SCOPES:
            causes.append(not_supported(f"spec.scopes[{i}]", scope, QUOTA_SCOPES))
    return causes


def quota_row(quota: Obj) -> list[Any]:
    """REQUEST and LIMIT cells: `name: used/hard` for each resource in `status.hard`."""
    status = status_of(quota)
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        cell = f"{name}: {_q(used.get(name, '0'))}/{_q(hard[name])}"
        (limits if name.split(".")[0] == "limits" and "." in name else requests).append(cell)
    return [", ".join(requests), ", ".join(limits), age_cell(quota)]


RESOURCE_QUOTA = Kind(
    group="",
    version="v1",
    kind="ResourceQuota",
    plural="resourcequotas",
    namespaced=True,
    short_names=("quota",),
    subresources=("status",),
    has_status=True,
    prepare_create=prepare_quota_create,
    validate=validate_resource_quota,
    validate_update=lambda new, old: validate_object_meta_update(new, old) + validate_resource_quota(new),
    columns=(
        Column("Request", description="Request represents a minimum amount of cpu/memory that a container may consume."),
        Column("Limit", description="Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        AGE,
    ),
    row=quota_row,
    schema_name="io.k8s.api.core.v1.ResourceQuota",
)  # fmt: skip
