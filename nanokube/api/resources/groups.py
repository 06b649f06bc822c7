"""The smaller API groups: autoscaling/v2 HorizontalPodAutoscaler, discovery.k8s.io/v1
EndpointSlice, coordination.k8s.io/v1 Lease, storage.k8s.io/v1 StorageClass,
policy/v1 PodDisruptionBudget, scheduling.k8s.io/v1 PriorityClass and
events.k8s.io/v1 Event; RBAC (`groups_rbac`), CustomResourceDefinition (`groups_crd`), the
HorizontalPodAutoscaler (`groups_autoscaling`) and events.k8s.io Events
(`groups_events`) live in their own modules and are re-exported in `KINDS`.

Each follows upstream's defaults, validation and printer for the kind. One
known simplification: upstream stores events.k8s.io/v1 Events and core/v1
Events as one resource (two views of the same objects); nanokube stores them
separately, so an Event written through one API is not seen through the other.

A default StorageClass prints as `NAME (default)`, so StorageClass places its
own NAME column (a column of format "name") and fills it with
`storage_class_name`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import get_path
from nanokube.api.resources import apps_common as c
from nanokube.api.resources import groups_autoscaling, groups_crd, groups_events, groups_rbac

Obj = dict[str, Any]


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
    causes = c.meta_update(new, old)
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
        c.AGE,
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
    validate_update=c.meta_update,
    columns=(
        Column(
            "Holder",
            description="holderIdentity contains the identity of the holder of a current lease.",
        ),
        c.AGE,
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
    causes = c.meta_update(new, old)
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
        storage_class_name(obj),
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
        Column("Name", format="name", description="Name must be unique within a namespace."),
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
        c.AGE,
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
    validate_update=c.meta_update,
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
        c.AGE,
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
    causes = c.meta_update(new, old)
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
        c.AGE,
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


KINDS: tuple[Kind, ...] = (
    groups_autoscaling.HORIZONTAL_POD_AUTOSCALER,
    ENDPOINT_SLICE,
    LEASE,
    STORAGE_CLASS,
    POD_DISRUPTION_BUDGET,
    PRIORITY_CLASS,
    groups_events.EVENT,
    *groups_rbac.KINDS,
    *groups_crd.KINDS,
)
