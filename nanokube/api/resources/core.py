"""The core/v1 kinds: one `Kind` per resource, as upstream's `pkg/registry/core/*/strategy.go`.

This module declares the small kinds (Namespace, Pod, ConfigMap, Secret,
ServiceAccount) and gathers the rest from their own modules (`core_service`,
`core_node`, `core_event`, `core_storage`, `core_policy`, `core_workloads`) into
`KINDS`. Each declaration wires defaults (`pkg/apis/core/v1/defaults.go`),
`PrepareForCreate`, validation (`pkg/apis/core/validation`), the table printer
(`pkg/printers/internalversion`) and the selectable fields.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.resources import (
    core_event,
    core_node,
    core_policy,
    core_service,
    core_storage,
    core_workloads,
)
from nanokube.api.resources.core_common import AGE, age_cell, spec_of, status_of
from nanokube.api.resources.pod import (
    default_pod,
    prepare_pod_create,
    validate_pod,
    validate_pod_update,
)
from nanokube.api.resources.pod_printing import POD_COLUMNS, POD_FIELD_SELECTORS, pod_row
from nanokube.api.validators import (
    config_map_key,
    forbidden,
    immutable,
    invalid,
    name_is_dns_label,
    name_is_dns_subdomain,
    qualified_name,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

MAX_SECRET_SIZE = 1024 * 1024  # also the limit of a ConfigMap's data
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


# --- Namespace ------------------------------------------------------------------------


def default_namespace(ns: Obj) -> None:
    """Every namespace carries its own name as the `kubernetes.io/metadata.name` label."""
    meta = ns.setdefault("metadata", {})
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    status = ns.get("status")
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Active"


def prepare_namespace_create(ns: Obj) -> None:
    """A new namespace is Active and carries the `kubernetes` finalizer."""
    ns["status"] = {"phase": "Active"}
    finalizers = ns.setdefault("spec", {}).setdefault("finalizers", [])
    if "kubernetes" not in finalizers:
        finalizers.append("kubernetes")


def _finalizer_causes(finalizers: list[str], path: str) -> list[Cause]:
    causes = []
    for name in finalizers:
        causes += [invalid(path, name, m) for m in qualified_name(name)]
        if "/" not in name and name not in STANDARD_FINALIZERS:
            causes.append(
                invalid(
                    path,
                    name,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return causes


def validate_namespace(ns: Obj) -> list[Cause]:
    causes = validate_object_meta(ns, False, name_is_dns_label)
    return causes + _finalizer_causes(spec_of(ns).get("finalizers") or [], "spec.finalizers")


def validate_namespace_update(new: Obj, old: Obj) -> list[Cause]:
    return validate_object_meta_update(new, old) + validate_namespace(new)


NAMESPACE = Kind(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    namespaced=False,
    short_names=("ns",),
    subresources=("status", "finalize"),
    has_status=True,
    defaults=default_namespace,
    prepare_create=prepare_namespace_create,
    validate=validate_namespace,
    validate_update=validate_namespace_update,
    columns=(Column("Status", description="The status of the namespace"), AGE),
    row=lambda ns: [status_of(ns).get("phase", ""), age_cell(ns)],
    field_selectors={"status.phase": lambda ns: status_of(ns).get("phase") or ""},
    schema_name="io.k8s.api.core.v1.Namespace",
)

POD = Kind(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=(
        "status",
        "binding",
        "eviction",
        "log",
        "exec",
        "attach",
        "portforward",
        "proxy",
        "ephemeralcontainers",
    ),
    has_status=True,
    graceful_deletion=True,
    defaults=default_pod,
    prepare_create=prepare_pod_create,
    validate=validate_pod,
    validate_update=validate_pod_update,
    columns=POD_COLUMNS,
    row=pod_row,
    field_selectors=POD_FIELD_SELECTORS,
    schema_name="io.k8s.api.core.v1.Pod",
)


# --- ConfigMap ------------------------------------------------------------------------


def validate_config_map(cm: Obj) -> list[Cause]:
    causes = validate_object_meta(cm, True, name_is_dns_subdomain)
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    size = 0
    for key, value in data.items():
        causes += [invalid(f"data[{key}]", key, m) for m in config_map_key(key)]
        if key in binary:
            causes.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        size += len(str(value).encode())
    for key, value in binary.items():
        causes += [invalid(f"binaryData[{key}]", key, m) for m in config_map_key(key)]
        size += len(_b64decode(value))
    if size > MAX_SECRET_SIZE:
        causes.append(
            Cause(
                "", f"Too long: may not be more than {MAX_SECRET_SIZE} bytes", "FieldValueTooLong"
            )
        )
    return causes


def _immutable_data(new: Obj, old: Obj, keys: tuple[str, ...]) -> list[Cause]:
    """ConfigMaps and Secrets marked `immutable: true` keep their data forever."""
    if not old.get("immutable"):
        return []
    msg = "field is immutable when `immutable` is set"
    causes = [] if new.get("immutable") else [forbidden("immutable", msg)]
    return causes + [forbidden(k, msg) for k in keys if (new.get(k) or {}) != (old.get(k) or {})]


def validate_config_map_update(new: Obj, old: Obj) -> list[Cause]:
    causes = validate_object_meta_update(new, old)
    causes += _immutable_data(new, old, ("data", "binaryData"))
    return causes + validate_config_map(new)


CONFIG_MAP = Kind(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    namespaced=True,
    short_names=("cm",),
    validate=validate_config_map,
    validate_update=validate_config_map_update,
    columns=(Column("Data", description="Data contains the configuration data."), AGE),
    row=lambda cm: [len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age_cell(cm)],
    schema_name="io.k8s.api.core.v1.ConfigMap",
)


# --- Secret ---------------------------------------------------------------------------


def _b64decode(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()


def default_secret(secret: Obj) -> None:
    """Type `Opaque`; `stringData` is folded into `data` (it wins), as the v1 conversion does."""
    if not secret.get("type"):
        secret["type"] = "Opaque"
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(secret: Obj) -> list[Cause]:
    causes = validate_object_meta(secret, True, name_is_dns_subdomain)
    data = secret.get("data") or {}
    size = 0
    for key, value in data.items():
        causes += [invalid(f"data[{key}]", key, m) for m in config_map_key(key)]
        size += len(_b64decode(value))
    if size > MAX_SECRET_SIZE:
        causes.append(
            Cause(
                "data",
                f"Too long: may not be more than {MAX_SECRET_SIZE} bytes",
                "FieldValueTooLong",
            )
        )
    kind = secret.get("type", "")
    if kind == "kubernetes.io/service-account-token":
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            causes += [required("data[username]"), required("data[password]")]
    for key in _SECRET_REQUIRED_KEYS.get(kind, ()):
        if key not in data:
            causes.append(required(f"data[{key}]"))
    return causes


def validate_secret_update(new: Obj, old: Obj) -> list[Cause]:
    causes = validate_object_meta_update(new, old)
    if new.get("type") != old.get("type"):
        causes.append(immutable("type", new.get("type")))
    causes += _immutable_data(new, old, ("data",))
    return causes + validate_secret(new)


SECRET = Kind(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    namespaced=True,
    defaults=default_secret,
    validate=validate_secret,
    validate_update=validate_secret_update,
    columns=(
        Column("Type", description="Used to facilitate programmatic handling of secret data."),
        Column("Data", description="Data contains the secret data."),
        AGE,
    ),
    row=lambda s: [s.get("type", ""), len(s.get("data") or {}), age_cell(s)],
    field_selectors={"type": lambda s: s.get("type") or ""},
    schema_name="io.k8s.api.core.v1.Secret",
)


# --- ServiceAccount -------------------------------------------------------------------


def validate_service_account(sa: Obj) -> list[Cause]:
    causes = validate_object_meta(sa, True, name_is_dns_subdomain)
    for i, ref in enumerate(sa.get("secrets") or []):
        name = ref.get("name", "")
        causes += [invalid(f"secrets[{i}].name", name, m) for m in name_is_dns_subdomain(name)]
    return causes


SERVICE_ACCOUNT = Kind(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    namespaced=True,
    short_names=("sa",),
    subresources=("token",),
    validate=validate_service_account,
    validate_update=lambda new, old: (
        validate_object_meta_update(new, old) + validate_service_account(new)
    ),
    columns=(
        Column("Secrets", description="Secrets is a list of the secrets in the same namespace."),
        AGE,
    ),
    row=lambda sa: [len(sa.get("secrets") or []), age_cell(sa)],
    schema_name="io.k8s.api.core.v1.ServiceAccount",
)

KINDS: tuple[Kind, ...] = (
    NAMESPACE,
    POD,
    core_service.SERVICE,
    core_service.ENDPOINTS,
    CONFIG_MAP,
    SECRET,
    core_node.NODE,
    core_event.EVENT,
    SERVICE_ACCOUNT,
    core_storage.PERSISTENT_VOLUME,
    core_storage.PERSISTENT_VOLUME_CLAIM,
    core_policy.LIMIT_RANGE,
    core_policy.RESOURCE_QUOTA,
    core_workloads.POD_TEMPLATE,
    core_workloads.REPLICATION_CONTROLLER,
)

__all__ = ["CONFIG_MAP", "KINDS", "NAMESPACE", "POD", "SECRET", "SERVICE_ACCOUNT"]
