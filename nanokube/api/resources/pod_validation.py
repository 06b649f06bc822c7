"""Pod and pod-template validation: upstream's `ValidatePodSpec` and `ValidatePodUpdate`.

The rules that matter for real workloads, in upstream's order and wording
(`pkg/apis/core/validation/validation.go`): container names (DNS-1123 labels,
unique across init, regular and ephemeral containers), required images, ports,
env names, volume names and the mounts that reference them, probes, resources
(requests ≤ limits), restart and DNS policies, tolerations, node selector. A
pod template (Deployments, Jobs, ...) is validated by the same code at its field
path, so `spec.template.spec.containers[0].image: Required value` reads exactly
as upstream's.

Updates: a pod's spec is immutable except the fields upstream lists in its
`spec: Forbidden: pod updates may not change fields other than ...` message.
"""

from __future__ import annotations

import copy
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.resources.pod_containers import (
    container_common_causes,
    enum_causes,
    validate_containers,
    validate_init_containers,
    validate_tolerations,
)
from nanokube.api.validators import (
    dns1123_label,
    duplicate,
    forbidden,
    invalid,
    label_causes,
    name_is_dns_subdomain,
    non_negative,
    qualified_name,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
MAX_INT32 = 2**31 - 1

UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


def validate_pod(pod: Obj) -> list[Cause]:
    """`ValidatePodCreate`: metadata, spec, and what only a create may not carry."""
    spec = pod.get("spec") or {}
    causes = validate_object_meta(pod, True, name_is_dns_subdomain)
    causes += validate_pod_spec(spec, "spec")
    if spec.get("ephemeralContainers"):
        causes.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if spec.get("nodeName") and spec.get("schedulingGates"):
        causes.append(
            forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared")
        )
    return causes


def validate_pod_template(template: Obj, path: str) -> list[Cause]:
    """A PodTemplateSpec at `path` (e.g. `spec.template`): its labels and its spec."""
    meta = template.get("metadata") or {}
    causes = label_causes(meta.get("labels"), f"{path}.metadata.labels")
    causes += _annotation_keys(meta.get("annotations"), f"{path}.metadata.annotations")
    return causes + validate_pod_spec(template.get("spec") or {}, f"{path}.spec")


def _annotation_keys(annotations: Any, path: str) -> list[Cause]:
    return [invalid(path, k, m) for k in (annotations or {}) for m in qualified_name(k.lower())]


def validate_pod_spec(spec: Obj, path: str) -> list[Cause]:
    """`ValidatePodSpec` at `path`, for pods and templates alike."""
    causes, volumes = _volumes(spec.get("volumes") or [], f"{path}.volumes")
    restart_policy = spec.get("restartPolicy", "")
    names: set[str] = set()
    causes += validate_containers(
        spec.get("containers") or [], volumes, names, f"{path}.containers"
    )
    causes += validate_init_containers(
        spec.get("initContainers") or [], volumes, names, f"{path}.initContainers"
    )
    for i, c in enumerate(spec.get("ephemeralContainers") or []):
        cpath = f"{path}.ephemeralContainers[{i}]"
        causes += container_common_causes(c, volumes, cpath)
        if c.get("name") in names:
            causes.append(duplicate(f"{cpath}.name", c.get("name")))
        names.add(c.get("name", ""))
    causes += enum_causes(f"{path}.restartPolicy", restart_policy, RESTART_POLICIES)
    causes += enum_causes(f"{path}.dnsPolicy", spec.get("dnsPolicy", ""), DNS_POLICIES)
    causes += label_causes(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key in ("serviceAccountName", "nodeName"):
        if spec.get(key):
            causes += [
                invalid(f"{path}.{key}", spec[key], m) for m in name_is_dns_subdomain(spec[key])
            ]
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        causes.append(
            invalid(
                f"{path}.activeDeadlineSeconds",
                deadline,
                f"must be between 1 and {MAX_INT32}, inclusive",
            )
        )
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            causes += [invalid(f"{path}.{key}", spec[key], m) for m in dns1123_label(spec[key])]
    causes += validate_tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    causes += non_negative(
        f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds")
    )
    if spec.get("hostNetwork"):
        for key in ("containers", "initContainers"):
            for i, c in enumerate(spec.get(key) or []):
                for j, port in enumerate(c.get("ports") or []):
                    if port.get("hostPort") and port.get("hostPort") != port.get("containerPort"):
                        causes.append(
                            invalid(
                                f"{path}.{key}[{i}].ports[{j}].containerPort",
                                port.get("containerPort"),
                                "must match `hostPort` when `hostNetwork` is true",
                            )
                        )
    return causes


# --- volumes ----------------------------------------------------------------------


def _volumes(volumes: list[Obj], path: str) -> tuple[list[Cause], set[str]]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        vpath = f"{path}[{i}]"
        sources = [k for k, v in vol.items() if k != "name" and isinstance(v, dict)]
        if not sources:
            causes.append(required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            causes.append(
                forbidden(f"{vpath}.{sources[1]}", "may not specify more than 1 volume type")
            )
        name = vol.get("name", "")
        if not name:
            causes.append(required(f"{vpath}.name"))
        else:
            causes += [invalid(f"{vpath}.name", name, m) for m in dns1123_label(name)]
        if name in names:
            causes.append(duplicate(f"{vpath}.name", name))
        names.add(name)
        for key, ref in (
            ("configMap", "name"),
            ("secret", "secretName"),
            ("persistentVolumeClaim", "claimName"),
        ):
            src = vol.get(key)
            if isinstance(src, dict) and key != "configMap" and not src.get(ref):
                causes.append(required(f"{vpath}.{key}.{ref}"))
        host_path = vol.get("hostPath")
        if isinstance(host_path, dict) and not host_path.get("path"):
            causes.append(required(f"{vpath}.hostPath.path"))
    return causes, names


# --- updates ------------------------------------------------------------------------


def validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    """`ValidatePodUpdate`: the new pod is valid and changes only the updatable fields."""
    causes = validate_object_meta_update(new, old)
    causes += validate_object_meta(new, True, name_is_dns_subdomain)
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    causes += validate_pod_spec(new_spec, "spec")
    if len(new_spec.get("containers") or []) != len(old_spec.get("containers") or []):
        causes.append(forbidden("spec.containers", "pod updates may not add or remove containers"))
        return causes
    old_deadline, new_deadline = (
        old_spec.get("activeDeadlineSeconds"),
        new_spec.get("activeDeadlineSeconds"),
    )
    if old_deadline is not None:
        if new_deadline is None:
            causes.append(
                invalid(
                    "spec.activeDeadlineSeconds",
                    None,
                    "must not update from a positive integer to nil value",
                )
            )
        elif new_deadline > old_deadline:
            causes.append(
                invalid(
                    "spec.activeDeadlineSeconds",
                    new_deadline,
                    "must be less than or equal to previous value",
                )
            )
    causes += _only_added_tolerations(
        new_spec.get("tolerations") or [], old_spec.get("tolerations") or []
    )
    munged = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        for c_new, c_old in zip(munged.get(key) or [], old_spec.get(key) or [], strict=False):
            c_new["image"] = c_old.get("image")
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(key, None)
        if key in old_spec:
            munged[key] = old_spec[key]
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old_spec:
        changed = sorted(k for k in set(munged) | set(old_spec) if munged.get(k) != old_spec.get(k))
        diff = "".join(f"\n- {k}: {old_spec.get(k)!r}\n+ {k}: {munged.get(k)!r}" for k in changed)
        causes.append(
            forbidden(
                "spec",
                "pod updates may not change fields other than "
                + ",".join(UPDATABLE_POD_FIELDS)
                + diff,
            )
        )
    return causes


def _only_added_tolerations(new: list[Obj], old: list[Obj]) -> list[Cause]:
    for t_old in old:
        base = {k: v for k, v in t_old.items() if k != "tolerationSeconds"}
        if not any(base == {k: v for k, v in t.items() if k != "tolerationSeconds"} for t in new):
            return [
                forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            ]
    return []
