"""apiextensions.k8s.io/v1 CustomResourceDefinition: the declaration, not the serving.

As upstream (`apiextensions-apiserver/pkg/apis/apiextensions/v1/defaults.go`,
`.../validation/validation.go`, `pkg/registry/customresourcedefinition`): the
name must be `<plural>.<group>`, the group a DNS subdomain with a dot, the
scope `Cluster` or `Namespaced`, the names DNS-1035 labels (kinds in mixed
case), and exactly one served version is the storage version. Group and
plural never change, scope and kind not once the CRD is established. A new
CRD records its storage version in `status.storedVersions`. Turning a CRD into
a served `Kind` is the API server's business.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import get_path

Obj = dict[str, Any]

GROUP = "apiextensions.k8s.io"


def default_crd(obj: Obj) -> None:
    """`SetDefaults_CustomResourceDefinitionSpec`: singular, listKind, conversion None."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict):
        if not names.get("singular") and names.get("kind"):
            names["singular"] = str(names["kind"]).lower()
        if not names.get("listKind") and names.get("kind"):
            names["listKind"] = f"{names['kind']}List"
    if spec.get("conversion") is None:
        spec["conversion"] = {"strategy": "None"}
    service = get_path(spec, ("conversion", "webhook", "clientConfig", "service"))
    if isinstance(service, dict):
        service.setdefault("port", 443)


def prepare_crd_create(obj: Obj) -> None:
    """The storage version is the first stored version."""
    stored = [
        ver.get("name")
        for ver in get_path(obj, ("spec", "versions"), []) or []
        if ver.get("storage")
    ]
    if stored:
        obj.setdefault("status", {}).setdefault("storedVersions", stored[:1])


def _name_causes(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    required = f"{get_path(spec, ('names', 'plural'), '')}.{spec.get('group', '')}"

    def validator(name: str, prefix: bool = False) -> list[str]:
        errs = v.name_is_dns_subdomain(name, prefix)
        if name != required:
            errs.append('must be spec.names.plural+"."+spec.group')
        return errs

    return v.validate_object_meta(obj, False, validator)


def _dns1035(path: str, value: str, prefix: str = "") -> list[Cause]:
    errs = v.dns1035_label(value)
    return [v.invalid(path, value, prefix + ",".join(errs))] if value and errs else []


def names_causes(names: Obj, path: str) -> list[Cause]:
    """`ValidateCustomResourceDefinitionNames`."""
    causes: list[Cause] = []
    for key in ("plural", "kind"):
        if key in names and not names[key]:
            causes.append(v.required(f"{path}.{key}"))
    causes += _dns1035(f"{path}.plural", names.get("plural") or "")
    causes += _dns1035(f"{path}.singular", names.get("singular") or "")
    mixed = "may have mixed case, but should otherwise match: "
    for key in ("kind", "listKind"):
        value = names.get(key) or ""
        errs = v.dns1035_label(value.lower())
        if value and errs:
            causes.append(v.invalid(f"{path}.{key}", value, mixed + ",".join(errs)))
    for i, short in enumerate(names.get("shortNames") or []):
        causes += _dns1035(f"{path}.shortNames[{i}]", short)
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        causes.append(
            v.invalid(
                f"{path}.listKind", names["listKind"], "kind and listKind may not be the same"
            )
        )
    for i, category in enumerate(names.get("categories") or []):
        causes += _dns1035(f"{path}.categories[{i}]", category)
    return causes


def validate_crd(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _name_causes(obj)
    group = spec.get("group") or ""
    if "group" in spec and not group:
        causes.append(v.required("spec.group"))
    elif v.dns1123_subdomain(group):
        causes.append(v.invalid("spec.group", group, ",".join(v.dns1123_subdomain(group))))
    elif "." not in group:
        causes.append(v.invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope") or ""
    if "scope" in spec and not scope:
        causes.append(v.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(v.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if "versions" in spec and not versions:
        causes.append(v.required("spec.versions"))
    seen: set[str] = set()
    for i, ver in enumerate(versions):
        name = ver.get("name") or ""
        if name in seen:
            causes.append(v.invalid(f"spec.versions[{i}].name", name, "must appear only once"))
        seen.add(name)
        causes += [v.invalid(f"spec.versions[{i}].name", name, m) for m in v.dns1035_label(name)]
    if versions and sum(1 for ver in versions if ver.get("storage")) != 1:
        causes.append(
            v.invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    return causes + names_causes(spec.get("names") or {}, "spec.names")


def _established(obj: Obj) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in get_path(obj, ("status", "conditions"), []) or []
    )


def validate_crd_update(new: Obj, old: Obj) -> list[Cause]:
    causes = v.validate_object_meta_update(new, old)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    pairs = [("spec.group", ("group",)), ("spec.names.plural", ("names", "plural"))]
    if _established(old):
        pairs += [("spec.scope", ("scope",)), ("spec.names.kind", ("names", "kind"))]
    for path, keys in pairs:
        if get_path(ns, keys) != get_path(os_, keys):
            causes.append(v.immutable(path, get_path(ns, keys)))
    return causes


def created_at_row(obj: Obj) -> list[Any]:
    return [get_path(obj, ("metadata", "creationTimestamp"), "")]


CUSTOM_RESOURCE_DEFINITION = Kind(
    group=GROUP,
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
    short_names=("crd", "crds"),
    categories=("api-extensions",),
    subresources=("status",),
    has_status=True,
    defaults=default_crd,
    prepare_create=prepare_crd_create,
    validate=validate_crd,
    validate_update=validate_crd_update,
    columns=(
        Column(
            "Created At",
            "date",
            description="CreationTimestamp is a timestamp representing the server time when this object was created.",
        ),
    ),
    row=created_at_row,
    schema_name="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
)

KINDS: tuple[Kind, ...] = (CUSTOM_RESOURCE_DEFINITION,)
