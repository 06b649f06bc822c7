"""The smaller API groups: autoscaling/v2 HorizontalPodAutoscaler, discovery.k8s.io/v1
EndpointSlice, coordination.k8s.io/v1 Lease, storage.k8s.io/v1 StorageClass,
policy/v1 PodDisruptionBudget, scheduling.k8s.io/v1 PriorityClass and
events.k8s.io/v1 Event; RBAC (`groups_rbac`) and CustomResourceDefinition
(`groups_crd`) live in their own modules and are re-exported in `KINDS`.

Each follows upstream's defaults, validation and printer for the kind. One
known simplification: upstream stores events.k8s.io/v1 Events and core/v1
Events as one resource (two views of the same objects); nanokube stores them
separately, so an Event written through one API is not seen through the other.

A default StorageClass prints as `NAME (default)` upstream; the NAME cell is
the API server's, so `storage_class_name` gives it that text.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import age, get_path
from nanokube.api.resources import apps_common as c
from nanokube.api.resources import groups_crd, groups_rbac

Obj = dict[str, Any]

_AGE = Column(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _meta_update(new: Obj, old: Obj) -> list[Cause]:
    return v.validate_object_meta_update(new, old)


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
            if not value:
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
    validate_update=_meta_update,
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
        _AGE,
    ),
    row=hpa_row,
    schema_name="io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
)


# --- EndpointSlice -------------------------------------------------------------------


def default_endpoint_slice(obj: Obj) -> None:
    """`SetDefaults_EndpointPort`: an unnamed TCP port."""
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            if port.get("name") is None:
                port["name"] = ""
            if port.get("protocol") is None:
                port["protocol"] = "TCP"


def _address_causes(kind: str, address: str, path: str) -> list[Cause]:
    if kind in ("IPv4", "IPv6"):
        version = 4 if kind == "IPv4" else 6
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is None or ip.version != version or (version == 4 and address.count(".") != 3):
            return [v.invalid(path, address, f"must be a valid {kind} address")]
        if ip.is_unspecified or ip.is_loopback or ip.is_link_local:
            return [v.invalid(path, address, _special_ip_message(ip))]
        return []
    if kind == "FQDN":
        return [v.invalid(path, address, m) for m in v.dns1123_subdomain(address)]
    return []


def _special_ip_message(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.is_unspecified:
        return (
            "may not be unspecified (0.0.0.0)" if ip.version == 4 else "may not be unspecified (::)"
        )
    if ip.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if ip.is_multicast:
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"


def validate_endpoint_slice(obj: Obj) -> list[Cause]:
    """`ValidateEndpointSlice`."""
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    kind = obj.get("addressType") or ""
    if "addressType" in obj and not kind:
        causes.append(v.required("addressType"))
    elif kind and kind not in ("FQDN", "IPv4", "IPv6"):
        causes.append(v.not_supported("addressType", kind, ["FQDN", "IPv4", "IPv6"]))
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > 1000:
        causes.append(v.too_many("endpoints", len(endpoints), 1000))
    for i, endpoint in enumerate(endpoints):
        path = f"endpoints[{i}].addresses"
        addresses = endpoint.get("addresses") or []
        if not addresses and "addresses" in endpoint:
            causes.append(v.required(path, "must contain at least 1 address"))
        elif len(addresses) > 100:
            causes.append(v.too_many(path, len(addresses), 100))
        for j, address in enumerate(addresses):
            causes += _address_causes(kind, address, f"{path}[{j}]")
        hostname = endpoint.get("hostname")
        if hostname is not None:
            causes += [
                v.invalid(f"endpoints[{i}].hostname", hostname, m)
                for m in v.dns1123_label(hostname)
            ]
    names: set[str] = set()
    for i, port in enumerate(obj.get("ports") or []):
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            causes += [v.invalid(f"{path}.name", name, m) for m in v.dns1123_label(name)]
        if name in names:
            causes.append(v.duplicate(f"{path}.name", name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            causes.append(v.required(f"{path}.protocol"))
        elif protocol not in ("SCTP", "TCP", "UDP"):
            causes.append(v.not_supported(f"{path}.protocol", protocol, ["SCTP", "TCP", "UDP"]))
    return causes


def validate_endpoint_slice_update(new: Obj, old: Obj) -> list[Cause]:
    causes = _meta_update(new, old)
    if new.get("addressType") != old.get("addressType"):
        causes.append(v.immutable("addressType", new.get("addressType")))
    return causes


def _first_three(items: list[str]) -> str:
    """`listWithMoreString`: three items and a count of the rest, or `<unset>`."""
    if len(items) > 3:
        return f"{','.join(items[:3])} + {len(items) - 3} more..."
    return ",".join(items) or "<unset>"


def endpoint_slice_row(obj: Obj) -> list[Any]:
    ports = []
    for p in obj.get("ports") or []:
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(p["name"])
        else:
            ports.append("*")
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        obj.get("addressType", ""),
        _first_three(ports),
        _first_three(addresses),
        c.creation_age(obj),
    ]


ENDPOINT_SLICE = Kind(
    group="discovery.k8s.io",
    version="v1",
    kind="EndpointSlice",
    plural="endpointslices",
    namespaced=True,
    defaults=default_endpoint_slice,
    validate=validate_endpoint_slice,
    validate_update=validate_endpoint_slice_update,
    columns=(
        Column(
            "AddressType",
            description="addressType specifies the type of address carried by this EndpointSlice.",
        ),
        Column(
            "Ports",
            description="ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        Column("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
        _AGE,
    ),
    row=endpoint_slice_row,
    schema_name="io.k8s.api.discovery.v1.EndpointSlice",
)


# --- Lease ---------------------------------------------------------------------------


def validate_lease(obj: Obj) -> list[Cause]:
    """`ValidateLease`: a positive duration, non-negative transitions."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        causes.append(v.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        causes.append(
            v.invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    if spec.get("preferredHolder") and not spec.get("strategy"):
        causes.append(
            v.forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined")
        )
    return causes


LEASE = Kind(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    namespaced=True,
    validate=validate_lease,
    validate_update=_meta_update,
    columns=(
        Column(
            "Holder",
            description="holderIdentity contains the identity of the holder of a current lease.",
        ),
        _AGE,
    ),
    row=lambda o: [get_path(o, ("spec", "holderIdentity"), ""), c.creation_age(o)],
    schema_name="io.k8s.api.coordination.v1.Lease",
)


# --- StorageClass --------------------------------------------------------------------

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def default_storage_class(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def validate_storage_class(obj: Obj) -> list[Cause]:
    """`ValidateStorageClass`."""
    causes = v.validate_object_meta(obj, False, v.name_is_dns_subdomain)
    provisioner = obj.get("provisioner") or ""
    if "provisioner" in obj and not provisioner:
        causes.append(v.required("provisioner"))
    if provisioner:
        causes += [
            v.invalid("provisioner", provisioner, m) for m in v.qualified_name(provisioner.lower())
        ]
    params = obj.get("parameters") or {}
    if len(params) > 512:
        causes.append(v.too_long("parameters", 512))
    policy = obj.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        causes.append(v.not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        causes.append(v.required("volumeBindingMode"))
    elif mode not in ("Immediate", "WaitForFirstConsumer"):
        causes.append(
            v.not_supported("volumeBindingMode", mode, ["Immediate", "WaitForFirstConsumer"])
        )
    return causes


def validate_storage_class_update(new: Obj, old: Obj) -> list[Cause]:
    causes = _meta_update(new, old)
    if (new.get("parameters") or {}) != (old.get("parameters") or {}):
        causes.append(v.forbidden("parameters", "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        causes.append(v.forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        causes.append(v.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        causes.append(v.immutable("volumeBindingMode", new.get("volumeBindingMode")))
    return causes


def is_default_storage_class(obj: Obj) -> bool:
    annotations = get_path(obj, ("metadata", "annotations"), {}) or {}
    return any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def storage_class_name(obj: Obj) -> str:
    """The NAME cell upstream prints: `standard (default)` for the default class."""
    name = get_path(obj, ("metadata", "name"), "")
    return f"{name} (default)" if is_default_storage_class(obj) else name


def storage_class_row(obj: Obj) -> list[Any]:
    return [
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        c.creation_age(obj),
    ]


STORAGE_CLASS = Kind(
    group="storage.k8s.io",
    version="v1",
    kind="StorageClass",
    plural="storageclasses",
    namespaced=False,
    short_names=("sc",),
    defaults=default_storage_class,
    validate=validate_storage_class,
    validate_update=validate_storage_class_update,
    columns=(
        Column("Provisioner", description="provisioner indicates the type of the provisioner."),
        Column(
            "ReclaimPolicy",
            description="reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
        ),
        Column(
            "VolumeBindingMode",
            description="volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
        ),
        Column(
            "AllowVolumeExpansion",
            description="allowVolumeExpansion shows whether the storage class allow volume expand.",
        ),
        _AGE,
    ),
    row=storage_class_row,
    schema_name="io.k8s.api.storage.v1.StorageClass",
)


# --- PodDisruptionBudget -------------------------------------------------------------


def validate_pdb(obj: Obj) -> list[Cause]:
    """`ValidatePodDisruptionBudget`: minAvailable xor maxUnavailable, each an int or a percent."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(v.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            causes += c.positive_int_or_percent(f"spec.{key}", spec[key])
            causes += c.not_more_than_100_percent(f"spec.{key}", spec[key])
    if spec.get("selector") is not None:
        causes += v.label_selector_causes(spec["selector"], "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        causes.append(
            v.not_supported(
                "spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"]
            )
        )
    return causes


def pdb_row(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        "N/A" if low is None else str(low),
        "N/A" if high is None else str(high),
        get_path(obj, ("status", "disruptionsAllowed"), 0),
        c.creation_age(obj),
    ]


POD_DISRUPTION_BUDGET = Kind(
    group="policy",
    version="v1",
    kind="PodDisruptionBudget",
    plural="poddisruptionbudgets",
    namespaced=True,
    short_names=("pdb",),
    subresources=("status",),
    has_status=True,
    validate=validate_pdb,
    validate_update=_meta_update,
    columns=(
        Column("Min Available", description="The minimum number of pods that must be available."),
        Column(
            "Max Unavailable", description="The maximum number of pods that may be unavailable."
        ),
        Column(
            "Allowed Disruptions",
            "integer",
            description="Calculated number of pods that may be disrupted at this time.",
        ),
        _AGE,
    ),
    row=pdb_row,
    schema_name="io.k8s.api.policy.v1.PodDisruptionBudget",
)


# --- PriorityClass -------------------------------------------------------------------

HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": 2_000_001_000,
    "system-cluster-critical": 2_000_000_000,
}


def default_priority_class(obj: Obj) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def validate_priority_class(obj: Obj) -> list[Cause]:
    """`ValidatePriorityClass`: `system-` names are reserved, user values at most 1e9."""
    causes = v.validate_object_meta(obj, False, v.name_is_dns_subdomain)
    name = get_path(obj, ("metadata", "name"), "")
    value = obj.get("value", 0)
    if name.startswith("system-"):
        error = ""
        if name not in SYSTEM_PRIORITY_CLASSES:
            error = f"{name} is not a known system priority class"
        elif value != SYSTEM_PRIORITY_CLASSES[name]:
            error = f"value of {name} PriorityClass must be {SYSTEM_PRIORITY_CLASSES[name]}"
        elif obj.get("globalDefault"):
            error = f"globalDefault of {name} PriorityClass must be false"
        if error:
            causes.append(
                v.forbidden(
                    "metadata.name",
                    f"priority class names with 'system-' prefix are reserved for system use only. error: {error}",
                )
            )
    elif isinstance(value, int) and value > HIGHEST_USER_PRIORITY:
        causes.append(
            v.forbidden(
                "value",
                f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}",
            )
        )
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in ("Never", "PreemptLowerPriority"):
        causes.append(
            v.not_supported("preemptionPolicy", policy, ["Never", "PreemptLowerPriority"])
        )
    return causes


def validate_priority_class_update(new: Obj, old: Obj) -> list[Cause]:
    causes = _meta_update(new, old)
    if new.get("value") != old.get("value"):
        causes.append(v.forbidden("value", "may not be changed in an update."))
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        causes.append(v.immutable("preemptionPolicy", new.get("preemptionPolicy")))
    return causes


PRIORITY_CLASS = Kind(
    group="scheduling.k8s.io",
    version="v1",
    kind="PriorityClass",
    plural="priorityclasses",
    namespaced=False,
    short_names=("pc",),
    defaults=default_priority_class,
    validate=validate_priority_class,
    validate_update=validate_priority_class_update,
    columns=(
        Column(
            "Value",
            "integer",
            description="value represents the integer value of this priority class.",
        ),
        Column(
            "Global-Default",
            "boolean",
            description="globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
        ),
        _AGE,
        Column(
            "PreemptionPolicy",
            description="preemptionPolicy is the Policy for preempting pods with lower priority.",
        ),
    ),
    row=lambda o: [
        o.get("value", 0),
        bool(o.get("globalDefault")),
        c.creation_age(o),
        o.get("preemptionPolicy", ""),
    ],
    schema_name="io.k8s.api.scheduling.v1.PriorityClass",
)


# --- events.k8s.io/v1 Event ----------------------------------------------------------

_EVENT_LIMITS = (("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024))


def validate_event(obj: Obj) -> list[Cause]:
    """`ValidateEventCreate` for events.k8s.io/v1 (field names as upstream reports them)."""
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    ns = get_path(obj, ("metadata", "namespace"), "")
    if not get_path(obj, ("regarding", "namespace")) and ns not in ("default", "kube-system"):
        causes.append(v.invalid("involvedObject.namespace", "", "does not match event.namespace"))
    for key in ("reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(key):
            causes.append(v.required(key))
    controller = obj.get("reportingController") or ""
    causes += [
        v.invalid("reportingController", controller, m) for m in v.qualified_name(controller)
    ]
    for key, limit in _EVENT_LIMITS:
        if len(obj.get(key) or "") > limit:
            causes.append(v.invalid(key, "", f"can have at most {limit} characters"))
    series = obj.get("series")
    if isinstance(series, dict):
        if (series.get("count") or 0) < 2:
            causes.append(v.invalid("series.count", "", "should be at least 2"))
        if not series.get("lastObservedTime"):
            causes.append(v.required("series.lastObservedTime"))
    if "eventTime" in obj and not obj.get("eventTime"):
        causes.append(v.required("eventTime"))
    if obj.get("type") not in ("Normal", "Warning"):
        causes.append(v.invalid("type", "", f"has invalid value: {obj.get('type') or ''}"))
    for key, internal in (
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ):
        if obj.get(key):
            causes.append(v.invalid(internal, "", "needs to be unset"))
    source = obj.get("deprecatedSource") or {}
    if source.get("component") or source.get("host"):
        causes.append(v.invalid("source", "", "needs to be unset"))
    return causes


def validate_event_update(new: Obj, old: Obj) -> list[Cause]:
    causes = _meta_update(new, old)
    for key, internal in (
        ("regarding", "involvedObject"),
        ("reason", "reason"),
        ("note", "message"),
        ("type", "type"),
        ("action", "action"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("related", "related"),
        ("eventTime", "eventTime"),
    ):
        if new.get(key) != old.get(key):
            causes.append(v.immutable(internal, new.get(key)))
    return causes


def event_row(obj: Obj, now: float | None = None) -> list[Any]:
    """The core event printer over the events.k8s.io fields (wide cells included)."""
    first = obj.get("deprecatedFirstTimestamp") or obj.get("eventTime")
    first_seen = age(first, now)
    last_seen = (
        age(obj["deprecatedLastTimestamp"], now)
        if obj.get("deprecatedLastTimestamp")
        else first_seen
    )
    count = obj.get("deprecatedCount") or 0
    series = obj.get("series")
    if isinstance(series, dict):
        last_seen, count = age(series.get("lastObservedTime"), now), series.get("count", 0)
    elif count == 0:
        count = 1
    regarding = obj.get("regarding") or {}
    kind = str(regarding.get("kind", "")).lower()
    target = f"{kind}/{regarding['name']}" if regarding.get("name") else kind
    source = obj.get("deprecatedSource") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    where = (
        "<unknown>" if not component else (f"{component}, {instance}" if instance else component)
    )
    return [
        last_seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        regarding.get("fieldPath", ""),
        where,
        (obj.get("note") or "").strip(),
        first_seen,
        count,
    ]


def _field(*path: str) -> Any:
    return lambda o: str(get_path(o, path, "") or "")


EVENT = Kind(
    group="events.k8s.io",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    short_names=("ev",),
    validate=validate_event,
    validate_update=validate_event_update,
    columns=(
        Column(
            "Last Seen",
            description="The time at which the most recent occurrence of this event was recorded.",
        ),
        Column(
            "Type",
            description="Type of this event (Normal, Warning), new types could be added in the future.",
        ),
        Column(
            "Reason",
            description="This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        Column("Object", description="The object that this event is about."),
        Column(
            "Subobject",
            priority=1,
            description="If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
        ),
        Column("Source", priority=1, description="The component reporting this event."),
        Column(
            "Message", description="A human-readable description of the status of this operation."
        ),
        Column(
            "First Seen", priority=1, description="The time at which the event was first recorded."
        ),
        Column("Count", priority=1, description="The number of times this event has occurred."),
    ),
    row=event_row,
    field_selectors={
        "regarding.kind": _field("regarding", "kind"),
        "regarding.namespace": _field("regarding", "namespace"),
        "regarding.name": _field("regarding", "name"),
        "regarding.uid": _field("regarding", "uid"),
        "regarding.apiVersion": _field("regarding", "apiVersion"),
        "regarding.resourceVersion": _field("regarding", "resourceVersion"),
        "regarding.fieldPath": _field("regarding", "fieldPath"),
        "reason": _field("reason"),
        "reportingController": _field("reportingController"),
        "type": _field("type"),
    },
    schema_name="io.k8s.api.events.v1.Event",
)

KINDS: tuple[Kind, ...] = (
    HORIZONTAL_POD_AUTOSCALER,
    ENDPOINT_SLICE,
    LEASE,
    STORAGE_CLASS,
    POD_DISRUPTION_BUDGET,
    PRIORITY_CLASS,
    EVENT,
    *groups_rbac.KINDS,
    *groups_crd.KINDS,
)
