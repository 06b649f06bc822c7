"""PodTemplate and ReplicationController: the core/v1 kinds that carry a pod template.

Both reuse the pod-spec defaulting and validation of `pod` at their template's
field path. A ReplicationController's selector is a plain label map that
defaults to the template's labels, and must select them.
"""

from __future__ import annotations

from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.resources.core_common import (
    AGE,
    age_cell,
    container_cells,
    format_labels,
    spec_of,
    status_of,
)
from nanokube.api.resources.pod import default_pod_spec, validate_pod_template
from nanokube.api.validators import (
    invalid,
    label_causes,
    name_is_dns_subdomain,
    non_negative,
    not_supported,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

CONTAINERS = Column("Containers", description="Names of each container in the template.")
IMAGES = Column("Images", description="Images referenced by each container in the template.")


# --- PodTemplate --------------------------------------------------------------------


def default_pod_template(obj: Obj) -> None:
    template = obj.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


def validate_pod_template_kind(obj: Obj) -> list[Cause]:
    causes = validate_object_meta(obj, True, name_is_dns_subdomain)
    return causes + validate_pod_template(obj.get("template") or {}, "template")


def pod_template_row(obj: Obj) -> list[Any]:
    template = obj.get("template") or {}
    names, images = container_cells(template.get("spec") or {})
    return [names, images, format_labels((template.get("metadata") or {}).get("labels"))]


POD_TEMPLATE = Kind(
    group="",
    version="v1",
    kind="PodTemplate",
    plural="podtemplates",
    namespaced=True,
    defaults=default_pod_template,
    validate=validate_pod_template_kind,
    validate_update=lambda new, old: (
        validate_object_meta_update(new, old) + validate_pod_template_kind(new)
    ),
    columns=(
        CONTAINERS,
        IMAGES,
        Column("Pod Labels", description="The labels for the pod template."),
    ),
    row=pod_template_row,
    schema_name="io.k8s.api.core.v1.PodTemplate",
)


# --- ReplicationController ----------------------------------------------------------


def default_replication_controller(rc: Obj) -> None:
    """`SetDefaults_ReplicationController`: selector and labels from the template; 1 replica."""
    spec = rc.setdefault("spec", {})
    template = spec.get("template")
    labels = ((template or {}).get("metadata") or {}).get("labels")
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = rc.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


def prepare_rc_create(rc: Obj) -> None:
    rc["status"] = {"replicas": 0}


def validate_replication_controller(rc: Obj) -> list[Cause]:
    causes = validate_object_meta(rc, True, name_is_dns_subdomain)
    spec = spec_of(rc)
    causes += non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = spec.get("selector") or {}
    if not selector:
        causes.append(required("spec.selector"))
    causes += label_causes(selector, "spec.selector")
    causes += non_negative("spec.replicas", spec.get("replicas"))
    template = spec.get("template")
    if template is None:
        return causes + [required("spec.template")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        causes.append(
            invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    causes += validate_pod_template(template, "spec.template")
    pod_spec = template.get("spec") or {}
    if pod_spec.get("restartPolicy") != "Always":
        causes.append(
            not_supported(
                "spec.template.spec.restartPolicy", pod_spec.get("restartPolicy", ""), ("Always",)
            )
        )
    if pod_spec.get("activeDeadlineSeconds") is not None:
        causes.append(
            invalid(
                "spec.template.spec.activeDeadlineSeconds",
                pod_spec["activeDeadlineSeconds"],
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return causes


def rc_row(rc: Obj) -> list[Any]:
    spec, status = spec_of(rc), status_of(rc)
    names, images = container_cells((spec.get("template") or {}).get("spec") or {})
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age_cell(rc),
        names,
        images,
        format_labels(spec.get("selector")),
    ]


REPLICATION_CONTROLLER = Kind(
    group="",
    version="v1",
    kind="ReplicationController",
    plural="replicationcontrollers",
    namespaced=True,
    short_names=("rc",),
    categories=("all",),
    subresources=("status",),
    has_status=True,
    defaults=default_replication_controller,
    prepare_create=prepare_rc_create,
    validate=validate_replication_controller,
    validate_update=lambda new, old: validate_object_meta_update(new, old)
    + validate_replication_controller(new),
    columns=(
        Column("Desired", "integer", description="Replicas is the number of desired replicas."),
        Column("Current", "integer", description="Replicas is the most recently observed number of replicas."),
        Column("Ready", "integer", description="The number of ready replicas for this replication controller."),
        AGE,
        Column("Containers", priority=1, description=CONTAINERS.description),
        Column("Images", priority=1, description=IMAGES.description),
        Column("Selector", priority=1, description="Selector is a label query over pods that should match the Replicas count."),
    ),
    row=rc_row,
    field_selectors={"status.replicas": lambda rc: str(status_of(rc).get("replicas", 0))},
    schema_name="io.k8s.api.core.v1.ReplicationController",
)  # fmt: skip
