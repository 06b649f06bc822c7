"""Pod validation (stub: the full rules of `ValidatePodSpec` are being written)."""

from __future__ import annotations

from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.validators import label_causes, validate_object_meta

Obj = dict[str, Any]


def validate_pod_spec(spec: Obj, path: str) -> list[Cause]:
    return []


def validate_pod_template(template: Obj, path: str) -> list[Cause]:
    meta = template.get("metadata") or {}
    causes = label_causes(meta.get("labels"), f"{path}.metadata.labels")
    return causes + validate_pod_spec(template.get("spec") or {}, f"{path}.spec")


def validate_pod(pod: Obj) -> list[Cause]:
    return validate_object_meta(pod, True) + validate_pod_spec(pod.get("spec") or {}, "spec")


def validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    return []
