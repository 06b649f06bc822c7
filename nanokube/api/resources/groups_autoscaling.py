"""autoscaling/v2 HorizontalPodAutoscaler: defaults, validation and the TARGETS column.

As upstream (`pkg/apis/autoscaling/v2/defaults.go`, `validation.go`, the printer):
one replica at least, CPU at 80% when no metric is given, and the v2 behavior
defaults (scale up by 4 pods or 100% per 15 s, no stabilization; scale down
100% per 15 s, with the controller's 5-minute window) filled into a behavior
the user gave.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import get_path
from nanokube.api.resources import apps_common as c

Obj = dict[str, Any]


# --- HorizontalPodAutoscaler ---------------------------------------------------------

SCALE_UP_DEFAULTS: Obj = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
# No stabilization window: the controller's --horizontal-pod-autoscaler-downscale-stabilization (5m) applies.
SCALE_DOWN_DEFAULTS: Obj = {
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}
METRIC_SOURCES = {
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "External": "external",
    "ContainerResource": "containerResource",
}


def _default_rules(rules: Any, defaults: Obj) -> Obj:
    out = dict(rules) if isinstance(rules, dict) else {}
    for key, value in defaults.items():
        if out.get(key) is None:
            out[key] = [dict(p) for p in value] if isinstance(value, list) else value
    return out


def default_hpa(obj: Obj) -> None:
    """`SetDefaults_HorizontalPodAutoscaler` (v2): min 1, CPU at 80%, and, if a behavior
    is given, its missing scale-up and scale-down rules."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _default_rules(behavior.get("scaleUp"), SCALE_UP_DEFAULTS)
        behavior["scaleDown"] = _default_rules(behavior.get("scaleDown"), SCALE_DOWN_DEFAULTS)


def _positive_quantity(path: str, value: Any) -> list[Cause]:
    try:
        if v.parse_quantity(value) > 0:
            return []
    except v.QuantityError as err:
        return [v.invalid(path, value, str(err))]
    return [v.invalid(path, value, "must be positive")]


def _target_causes(target: Obj, path: str) -> list[Cause]:
    """`validateMetricTarget`."""
    causes: list[Cause] = []
    kind = target.get("type") or ""
    if not kind:
        causes.append(v.required(f"{path}.type", "must specify a metric target type"))
    elif kind not in ("Utilization", "Value", "AverageValue"):
        causes.append(
            v.invalid(f"{path}.type", kind, "must be either Utilization, Value, or AverageValue")
        )
    for key in ("value", "averageValue"):
        if target.get(key) is not None:
            causes += _positive_quantity(f"{path}.{key}", target[key])
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization < 1:
        causes.append(
            v.invalid(f"{path}.averageUtilization", utilization, "must be greater than 0")
        )
    return causes


def _metric_causes(metric: Obj, path: str) -> list[Cause]:
    """`validateMetricSpec`: one source, of the declared type, with a sound target."""
    kind = metric.get("type") or ""
    causes: list[Cause] = []
    if not kind:
        causes.append(v.required(f"{path}.type", "must specify a metric source type"))
    if kind not in METRIC_SOURCES:
        causes.append(v.not_supported(f"{path}.type", kind, sorted(METRIC_SOURCES)))
    present = [field for field in METRIC_SOURCES.values() if metric.get(field) is not None]
    expected = METRIC_SOURCES.get(kind, "")
    if expected and metric.get(expected) is None:
        causes.append(
            v.required(
                f"{path}.{expected}", "must populate information for the given metric source"
            )
        )
    if len(present) > 1:
        causes += [
            v.forbidden(f"{path}.{f}", "must populate the given metric source only")
            for f in present
            if f != expected
        ]
    source = metric.get(expected) if expected else None
    if isinstance(source, dict):
        spath = f"{path}.{expected}"
        target = source.get("target") or {}
        causes += _target_causes(target, f"{spath}.target")
        if expected in ("resource", "containerResource"):
            if not source.get("name"):
                causes.append(v.required(f"{spath}.name", "must specify a resource name"))
            if target.get("averageUtilization") is None and target.get("averageValue") is None:
                causes.append(
                    v.required(
                        f"{spath}.target.averageUtilization",
                        "must set either a target raw value or a target utilization",
                    )
                )
            if (
                target.get("averageUtilization") is not None
                and target.get("averageValue") is not None
            ):
                causes.append(
                    v.forbidden(
                        f"{spath}.target.averageValue",
                        "may not set both a target raw value and a target utilization",
                    )
                )
    return causes


def _rules_causes(rules: Obj, path: str) -> list[Cause]:
    """`validateScalingRules`."""
    causes: list[Cause] = []
    window = rules.get("stabilizationWindowSeconds")
    if isinstance(window, int) and window < 0:
        causes.append(
            v.invalid(
                f"{path}.stabilizationWindowSeconds",
                window,
                "must be greater than or equal to zero",
            )
        )
    if isinstance(window, int) and window > 3600:
        causes.append(
            v.invalid(
                f"{path}.stabilizationWindowSeconds", window, "must be less than or equal to 3600"
            )
        )
    select = rules.get("selectPolicy")
    if select is not None and select not in ("Disabled", "Max", "Min"):
        causes.append(v.not_supported(f"{path}.selectPolicy", select, ["Disabled", "Max", "Min"]))
    policies = rules.get("policies") or []
    if not policies:
        causes.append(v.required(f"{path}.policies", "must specify at least one Policy"))
    for i, policy in enumerate(policies):
        ppath = f"{path}.policies[{i}]"
        if policy.get("type") not in ("Pods", "Percent"):
            causes.append(
                v.not_supported(f"{ppath}.type", policy.get("type", ""), ["Percent", "Pods"])
            )
        if (policy.get("value") or 0) <= 0:
            causes.append(
                v.invalid(f"{ppath}.value", policy.get("value", 0), "must be greater than zero")
            )
        period = policy.get("periodSeconds") or 0
        if period <= 0:
            causes.append(v.invalid(f"{ppath}.periodSeconds", period, "must be greater than zero"))
        if period > 1800:
            causes.append(
                v.invalid(f"{ppath}.periodSeconds", period, "must be less than or equal to 1800")
            )
    return causes


def validate_hpa(obj: Obj) -> list[Cause]:
    """`ValidateHorizontalPodAutoscaler` (scale to zero is an alpha gate: min is 1)."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    low, high = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if isinstance(low, int) and low < 1:
        causes.append(v.invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if isinstance(high, int) and high < 1:
        causes.append(v.invalid("spec.maxReplicas", high, "must be greater than 0"))
    if isinstance(low, int) and isinstance(high, int) and high < low:
        causes.append(
            v.invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    if "scaleTargetRef" in spec:
        ref = spec.get("scaleTargetRef") or {}
        for key in ("kind", "name"):
            value = ref.get(key) or ""
            if key in ref and not value:
                causes.append(v.required(f"spec.scaleTargetRef.{key}"))
            causes += [
                v.invalid(f"spec.scaleTargetRef.{key}", value, m)
                for m in v.path_segment_name(value)
            ]
    for i, metric in enumerate(spec.get("metrics") or []):
        causes += _metric_causes(metric or {}, f"spec.metrics[{i}]")
    behavior = spec.get("behavior") or {}
    for key in ("scaleUp", "scaleDown"):
        if isinstance(behavior.get(key), dict):
            causes += _rules_causes(behavior[key], f"spec.behavior.{key}")
    return causes


def hpa_targets(obj: Obj) -> str:
    """`formatHPAMetrics`: `cpu: 50%/80%` per metric, two of them and a count of the rest."""
    specs = get_path(obj, ("spec", "metrics"), []) or []
    statuses = get_path(obj, ("status", "currentMetrics"), []) or []
    if not specs:
        return "<none>"
    items = []
    for i, spec in enumerate(specs):
        status = statuses[i] if i < len(statuses) else {}
        kind = spec.get("type")
        source = METRIC_SOURCES.get(kind or "", "")
        target = get_path(spec, (source, "target"), {}) if source else {}
        current = status.get(source) if source else None
        if kind in ("Resource", "ContainerResource"):
            name = get_path(spec, (source, "name"), "")
            if target.get("averageValue") is not None:
                now = (
                    "<unknown>"
                    if current is None
                    else str(get_path(current, ("current", "averageValue"), "<nil>"))
                )
                items.append(f"{name}: {now}/{target['averageValue']}")
            else:
                util = get_path(current, ("current", "averageUtilization")) if current else None
                now = "<unknown>" if util is None else f"{util}%"
                want = (
                    "<auto>"
                    if target.get("averageUtilization") is None
                    else f"{target['averageUtilization']}%"
                )
                items.append(f"{name}: {now}/{want}")
        elif kind == "Pods":
            now = (
                "<unknown>"
                if current is None
                else str(get_path(current, ("current", "averageValue"), "<nil>"))
            )
            items.append(f"{now}/{target.get('averageValue', '<nil>')}")
        elif kind in ("Object", "External"):
            if target.get("averageValue") is not None:
                avg = get_path(current, ("current", "averageValue")) if current else None
                items.append(
                    f"{'<unknown>' if avg is None else avg}/{target['averageValue']} (avg)"
                )
            else:
                now = (
                    "<unknown>"
                    if current is None
                    else str(get_path(current, ("current", "value"), "<nil>"))
                )
                items.append(f"{now}/{target.get('value', '<nil>')}")
        else:
            items.append("<unknown type>")
    if len(items) > 2:
        return f"{', '.join(items[:2])} + {len(items) - 2} more..."
    return ", ".join(items)


def hpa_row(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        hpa_targets(obj),
        "<unset>" if low is None else str(low),
        spec.get("maxReplicas", 0),
        get_path(obj, ("status", "currentReplicas"), 0),
        c.creation_age(obj),
    ]


HORIZONTAL_POD_AUTOSCALER = Kind(
    group="autoscaling",
    version="v2",
    kind="HorizontalPodAutoscaler",
    plural="horizontalpodautoscalers",
    namespaced=True,
    short_names=("hpa",),
    categories=("all",),
    subresources=("status",),
    has_status=True,
    defaults=default_hpa,
    validate=validate_hpa,
    validate_update=c.meta_update,
    columns=(
        Column("Reference", description="scaleTargetRef points to the target resource to scale."),
        Column(
            "Targets",
            description="metrics contains the specifications for which to use to calculate the desired replica count.",
        ),
        Column(
            "MinPods",
            description="minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
        ),
        Column(
            "MaxPods",
            description="maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
        ),
        Column(
            "Replicas",
            description="currentReplicas is current number of replicas of pods managed by this autoscaler.",
        ),
        c.AGE,
    ),
    row=hpa_row,
    schema_name="io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
)
