"""PersistentVolume and PersistentVolumeClaim.

Both start Pending (the volume binder moves them on); a claim's spec is
immutable after creation except that it may be bound once (`volumeName`) and
its storage request may grow, as upstream's `ValidatePersistentVolumeClaimUpdate`
allows.
"""

from __future__ import annotations

import copy
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import now_rfc3339
from nanokube.api.resources.core_common import AGE, age_cell, spec_of, status_of
from nanokube.api.validators import (
    canonical_quantity,
    forbidden,
    immutable,
    invalid,
    label_selector_causes,
    name_is_dns_subdomain,
    not_supported,
    parse_quantity,
    quantity_causes,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_MODE_ABBREVIATIONS = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_NOT_SOURCES = {
    "accessModes", "capacity", "claimRef", "persistentVolumeReclaimPolicy", "storageClassName",
    "mountOptions", "volumeMode", "nodeAffinity", "volumeAttributesClassName",
}  # fmt: skip


def access_modes_string(modes: list[str] | None) -> str:
    """`GetAccessModesAsString`: RWO,ROX,RWX,RWOP in that order."""
    present = set(modes or [])
    return ",".join(short for mode, short in _MODE_ABBREVIATIONS if mode in present)


def _storage_class(obj: Obj) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if STORAGE_CLASS_ANNOTATION in annotations:
        return str(annotations[STORAGE_CLASS_ANNOTATION])
    return spec_of(obj).get("storageClassName") or ""


def _quantity_cell(value: Any) -> str:
    try:
        return canonical_quantity(value)
    except ValueError:
        return str(value)


def _modes_causes(modes: list[str], path: str, detail: str = "") -> list[Cause]:
    if not modes:
        return [required(path, detail)]
    return [not_supported(path, m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]


def _positive_storage(value: Any, path: str) -> list[Cause]:
    causes = quantity_causes(path, value)
    if not causes and parse_quantity(value) <= 0:
        causes.append(invalid(path, _quantity_cell(value), "must be greater than zero"))
    return causes


# --- PersistentVolume ---------------------------------------------------------------


def default_pv(pv: Obj) -> None:
    spec = pv.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    if isinstance(spec.get("hostPath"), dict):
        spec["hostPath"].setdefault("type", "")
    status = pv.get("status")
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Pending"


def prepare_pv_create(pv: Obj) -> None:
    pv["status"] = {"phase": "Pending", "lastPhaseTransitionTime": now_rfc3339()}


def validate_pv(pv: Obj) -> list[Cause]:
    causes = validate_object_meta(pv, False, name_is_dns_subdomain)
    spec = spec_of(pv)
    causes += _modes_causes(spec.get("accessModes") or [], "spec.accessModes")
    capacity = spec.get("capacity") or {}
    if not capacity:
        causes.append(required("spec.capacity"))
    elif "storage" not in capacity or len(capacity) > 1:
        causes.append(not_supported("spec.capacity", capacity, ("storage",)))
    for name, value in capacity.items():
        causes += _positive_storage(value, f"spec.capacity[{name}]")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in RECLAIM_POLICIES:
        causes.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
    if spec.get("volumeMode") and spec["volumeMode"] not in VOLUME_MODES:
        causes.append(not_supported("spec.volumeMode", spec["volumeMode"], VOLUME_MODES))
    sources = [k for k, v in spec.items() if k not in _NOT_SOURCES and isinstance(v, dict)]
    if not sources:
        causes.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        causes.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    for key in ("hostPath", "local"):
        source = spec.get(key)
        if isinstance(source, dict) and not source.get("path"):
            causes.append(required(f"spec.{key}.path"))
    if isinstance(spec.get("local"), dict) and not spec.get("nodeAffinity"):
        causes.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    return causes


def _volume_source(spec: Obj) -> Obj:
    return {k: v for k, v in spec.items() if k not in _NOT_SOURCES}


def validate_pv_update(new: Obj, old: Obj) -> list[Cause]:
    causes = validate_object_meta_update(new, old) + validate_pv(new)
    new_spec, old_spec = spec_of(new), spec_of(old)
    if _volume_source(new_spec) != _volume_source(old_spec):
        causes.append(
            forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            )
        )
    if new_spec.get("volumeMode") != old_spec.get("volumeMode"):
        causes.append(immutable("volumeMode", new_spec.get("volumeMode")))
    if old_spec.get("nodeAffinity") and new_spec.get("nodeAffinity") != old_spec["nodeAffinity"]:
        causes.append(immutable("nodeAffinity", new_spec.get("nodeAffinity")))
    return causes


def pv_row(pv: Obj) -> list[Any]:
    spec, status = spec_of(pv), status_of(pv)
    claim = spec.get("claimRef")
    claim_cell = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    deleting = (pv.get("metadata") or {}).get("deletionTimestamp")
    return [
        _quantity_cell((spec.get("capacity") or {}).get("storage", "0")),
        access_modes_string(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        "Terminating" if deleting else status.get("phase", ""),
        claim_cell,
        _storage_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        age_cell(pv),
        spec.get("volumeMode") or "<unset>",
    ]


PERSISTENT_VOLUME = Kind(
    group="",
    version="v1",
    kind="PersistentVolume",
    plural="persistentvolumes",
    namespaced=False,
    short_names=("pv",),
    subresources=("status",),
    has_status=True,
    defaults=default_pv,
    prepare_create=prepare_pv_create,
    validate=validate_pv,
    validate_update=validate_pv_update,
    columns=(
        Column("Capacity", description="capacity is the description of the persistent volume's resources and capacity."),
        Column("Access Modes", description="accessModes contains all ways the volume can be mounted."),
        Column("Reclaim Policy", description="persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        Column("Status", description="phase indicates if a volume is available, bound to a claim, or released by a claim."),
        Column("Claim", description="claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        Column("StorageClass", description="StorageClass of the pv"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        Column("Reason", description="reason is a brief CamelCase string that describes any failure."),
        AGE,
        Column("VolumeMode", priority=1, description="volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ),
    row=pv_row,
    schema_name="io.k8s.api.core.v1.PersistentVolume",
)  # fmt: skip


# --- PersistentVolumeClaim ----------------------------------------------------------


def default_pvc(pvc: Obj) -> None:
    pvc.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    status = pvc.get("status")
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Pending"


def prepare_pvc_create(pvc: Obj) -> None:
    pvc["status"] = {"phase": "Pending"}


def validate_pvc(pvc: Obj) -> list[Cause]:
    causes = validate_object_meta(pvc, True, name_is_dns_subdomain)
    spec = spec_of(pvc)
    causes += _modes_causes(
        spec.get("accessModes") or [], "spec.accessModes", "at least 1 access mode is required"
    )
    causes += label_selector_causes(spec.get("selector"), "spec.selector")
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(required("spec.resources[storage]"))
    else:
        causes += _positive_storage(storage, "spec.resources[storage]")
    name = spec.get("storageClassName")
    if name:
        causes += [invalid("spec.storageClassName", name, m) for m in name_is_dns_subdomain(name)]
    if spec.get("volumeMode") and spec["volumeMode"] not in VOLUME_MODES:
        causes.append(not_supported("spec.volumeMode", spec["volumeMode"], VOLUME_MODES))
    return causes


def _storage_request(spec: Obj) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def validate_pvc_update(new: Obj, old: Obj) -> list[Cause]:
    """Immutable spec, except binding once and resizing a bound claim's storage request."""
    causes = validate_object_meta_update(new, old) + validate_pvc(new)
    new_spec, old_spec = copy.deepcopy(spec_of(new)), copy.deepcopy(spec_of(old))
    old_size, new_size = _storage_request(old_spec), _storage_request(new_spec)
    if not old_spec.get("volumeName") and new_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec["volumeName"]
    if status_of(new).get("phase") == "Bound" and new_size is not None:
        new_spec["resources"]["requests"]["storage"] = old_size
    for spec in (new_spec, old_spec):
        spec.pop("volumeAttributesClassName", None)
    if new_spec != old_spec:
        causes.append(
            forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        )
    if new_size is None or old_size is None:
        return causes
    capacity = (status_of(old).get("capacity") or {}).get("storage") or "0"
    try:
        shrinking = parse_quantity(new_size) < parse_quantity(old_size)
        below_capacity = parse_quantity(new_size) <= parse_quantity(capacity)
    except ValueError:
        return causes  # a bad quantity is already reported by validate_pvc
    if shrinking and below_capacity:
        causes.append(
            forbidden(
                "spec.resources.requests.storage", "field can not be less than status.capacity"
            )
        )
    return causes


def pvc_row(pvc: Obj) -> list[Any]:
    spec, status = spec_of(pvc), status_of(pvc)
    deleting = (pvc.get("metadata") or {}).get("deletionTimestamp")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes_string(status.get("accessModes"))
        capacity = _quantity_cell((status.get("capacity") or {}).get("storage", "0"))
    return [
        "Terminating" if deleting else status.get("phase", ""),
        spec.get("volumeName", ""),
        capacity,
        modes,
        _storage_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        age_cell(pvc),
        spec.get("volumeMode") or "<unset>",
    ]


PERSISTENT_VOLUME_CLAIM = Kind(
    group="",
    version="v1",
    kind="PersistentVolumeClaim",
    plural="persistentvolumeclaims",
    namespaced=True,
    short_names=("pvc",),
    subresources=("status",),
    has_status=True,
    defaults=default_pvc,
    prepare_create=prepare_pvc_create,
    validate=validate_pvc,
    validate_update=validate_pvc_update,
    columns=(
        Column("Status", description="phase represents the current phase of PersistentVolumeClaim."),
        Column("Volume", description="volumeName is the binding reference to the PersistentVolume backing this claim."),
        Column("Capacity", description="capacity represents the actual resources of the underlying volume."),
        Column("Access Modes", description="accessModes contains the actual access modes the volume backing the PVC has."),
        Column("StorageClass", description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
        AGE,
        Column("VolumeMode", priority=1, description="volumeMode defines what type of volume is required by the claim."),
    ),
    row=pvc_row,
    schema_name="io.k8s.api.core.v1.PersistentVolumeClaim",
)  # fmt: skip
