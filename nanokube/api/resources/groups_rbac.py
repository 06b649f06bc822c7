"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

As upstream (`pkg/apis/rbac/v1/defaults.go`, `pkg/apis/rbac/validation`): names
only need to be URL path segments; every rule needs verbs and either resources
with API groups or (cluster roles only) non-resource URLs; bindings refer to a
role in this API group, and their `roleRef` never changes. Subjects' `apiGroup`
is defaulted from their kind. Roles print as NAME CREATED AT (upstream has no
printer for them, so the default table applies); bindings as NAME ROLE AGE.
"""

from __future__ import annotations

import json
from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import get_path
from nanokube.api.resources import apps_common as c

Obj = dict[str, Any]

GROUP = "rbac.authorization.k8s.io"
_CREATED_AT = Column(
    "Created At",
    "date",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _go_strings(values: list[Any]) -> str:
    return "[]string{" + ", ".join(json.dumps(str(x)) for x in values) + "}"


def policy_rule_causes(rule: Obj, namespaced: bool, path: str) -> list[Cause]:
    """`ValidatePolicyRule`."""
    causes: list[Cause] = []
    if "verbs" in rule and not rule["verbs"]:  # absent: the schema's Required
        causes.append(v.required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            causes.append(
                c.invalid_go(
                    f"{path}.nonResourceURLs",
                    _go_strings(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(
                c.invalid_go(
                    f"{path}.nonResourceURLs",
                    _go_strings(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return causes
    if not rule.get("apiGroups"):
        causes.append(
            v.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
        )
    if not rule.get("resources"):
        causes.append(
            v.required(f"{path}.resources", "resource rules must supply at least one resource")
        )
    return causes


def _role_causes(obj: Obj, namespaced: bool) -> list[Cause]:
    causes = v.validate_object_meta(obj, namespaced, v.name_is_path_segment)
    for i, rule in enumerate(obj.get("rules") or []):
        causes += policy_rule_causes(rule or {}, namespaced, f"rules[{i}]")
    return causes


def validate_role(obj: Obj) -> list[Cause]:
    return _role_causes(obj, True)


def validate_cluster_role(obj: Obj) -> list[Cause]:
    causes = _role_causes(obj, False)
    aggregation = obj.get("aggregationRule")
    if aggregation is not None:
        selectors = aggregation.get("clusterRoleSelectors") or []
        if not selectors:
            causes.append(
                v.required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                )
            )
        for i, sel in enumerate(selectors):
            causes += v.label_selector_causes(sel, f"aggregationRule.clusterRoleSelectors[{i}]")
    return causes


def default_binding(obj: Obj) -> None:
    """`SetDefaults_RoleBinding` and `SetDefaults_Subject`: the RBAC group where it is implied."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup"):
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = GROUP
            elif subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""


def subject_causes(subject: Obj, namespaced: bool, path: str) -> list[Cause]:
    """`ValidateRoleBindingSubject`."""
    causes: list[Cause] = []
    name = subject.get("name") or ""
    if "name" in subject and not name:
        causes.append(v.required(f"{path}.name"))
    kind = subject.get("kind")
    group = subject.get("apiGroup") or ""
    if "kind" not in subject:
        pass  # the schema reports it
    elif kind == "ServiceAccount":
        if name:
            causes += [v.invalid(f"{path}.name", name, m) for m in v.name_is_dns_subdomain(name)]
        if group:
            causes.append(v.not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            causes.append(v.required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            causes.append(v.not_supported(f"{path}.apiGroup", group, [GROUP]))
    else:
        causes.append(v.not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return causes


def _binding_causes(obj: Obj, namespaced: bool) -> list[Cause]:
    causes = v.validate_object_meta(obj, namespaced, v.name_is_path_segment)
    ref = obj.get("roleRef") or {}
    if "roleRef" not in obj:
        return causes  # the schema reports it
    if ref.get("apiGroup", "") != GROUP:
        causes.append(v.not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        causes.append(v.not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    name = ref.get("name") or ""
    if "name" in ref and not name:
        causes.append(v.required("roleRef.name"))
    else:
        causes += [v.invalid("roleRef.name", name, m) for m in v.name_is_path_segment(name)]
    for i, subject in enumerate(obj.get("subjects") or []):
        causes += subject_causes(subject or {}, namespaced, f"subjects[{i}]")
    return causes


def validate_role_binding(obj: Obj) -> list[Cause]:
    return _binding_causes(obj, True)


def validate_cluster_role_binding(obj: Obj) -> list[Cause]:
    return _binding_causes(obj, False)


def _go_role_ref(ref: Obj) -> str:
    return (
        f"rbac.RoleRef{{APIGroup:{json.dumps(ref.get('apiGroup', ''))}, "
        f"Kind:{json.dumps(ref.get('kind', ''))}, Name:{json.dumps(ref.get('name', ''))}}}"
    )


def validate_binding_update(new: Obj, old: Obj) -> list[Cause]:
    causes = c.meta_update(new, old)
    if (new.get("roleRef") or {}) != (old.get("roleRef") or {}):
        causes.append(
            c.invalid_go("roleRef", _go_role_ref(new.get("roleRef") or {}), "cannot change roleRef")
        )
    return causes


def created_at_row(obj: Obj) -> list[Any]:
    return [get_path(obj, ("metadata", "creationTimestamp"), "")]


def subjects_strings(subjects: list[Obj]) -> tuple[str, str, str]:
    """`rbac.SubjectsStrings`: users, groups and `namespace/name` service accounts."""
    users, groups, sas = [], [], []
    for s in subjects:
        if s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def binding_row(obj: Obj) -> list[Any]:
    ref = obj.get("roleRef") or {}
    users, groups, sas = subjects_strings(obj.get("subjects") or [])
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", c.creation_age(obj), users, groups, sas]


_BINDING_COLUMNS = (
    Column(
        "Role",
        description="RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    c.AGE,
    Column("Users", priority=1, description="Users in the roleBinding"),
    Column("Groups", priority=1, description="Groups in the roleBinding"),
    Column("ServiceAccounts", priority=1, description="ServiceAccounts in the roleBinding"),
)

ROLE = Kind(
    group=GROUP,
    version="v1",
    kind="Role",
    plural="roles",
    namespaced=True,
    validate=validate_role,
    validate_update=c.meta_update,
    columns=(_CREATED_AT,),
    row=created_at_row,
    schema_name="io.k8s.api.rbac.v1.Role",
)
CLUSTER_ROLE = Kind(
    group=GROUP,
    version="v1",
    kind="ClusterRole",
    plural="clusterroles",
    namespaced=False,
    validate=validate_cluster_role,
    validate_update=c.meta_update,
    columns=(_CREATED_AT,),
    row=created_at_row,
    schema_name="io.k8s.api.rbac.v1.ClusterRole",
)
ROLE_BINDING = Kind(
    group=GROUP,
    version="v1",
    kind="RoleBinding",
    plural="rolebindings",
    namespaced=True,
    defaults=default_binding,
    validate=validate_role_binding,
    validate_update=validate_binding_update,
    columns=_BINDING_COLUMNS,
    row=binding_row,
    schema_name="io.k8s.api.rbac.v1.RoleBinding",
)
CLUSTER_ROLE_BINDING = Kind(
    group=GROUP,
    version="v1",
    kind="ClusterRoleBinding",
    plural="clusterrolebindings",
    namespaced=False,
    defaults=default_binding,
    validate=validate_cluster_role_binding,
    validate_update=validate_binding_update,
    columns=_BINDING_COLUMNS,
    row=binding_row,
    schema_name="io.k8s.api.rbac.v1.ClusterRoleBinding",
)

KINDS: tuple[Kind, ...] = (ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING)
