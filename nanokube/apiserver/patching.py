"""PATCH: the four patch types applied to the stored object, and the `scale` subresource.

A patch is a read-modify-write: the patch is applied to the current object and
the result goes through the same update path as a PUT (admission, status split,
compare-and-swap), retried on conflict unless the patch itself pins a
resourceVersion. Server-side apply (`application/apply-patch+yaml`) creates the
object if absent, else merges the applied configuration strategically; field
ownership (managedFields and conflicts) is not tracked.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from nanokube.api import errors, meta, selectors
from nanokube.api.kinds import Kind
from nanokube.api.options import WriteOptions
from nanokube.api.patch_json import json_merge_patch, json_patch
from nanokube.api.patch_strategic import strategic_merge_patch
from nanokube.api.validation import builtin_schema_name
from nanokube.apiserver.rest import ResourceStore

Obj = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(kind: Kind, current: Obj, patch_type: str, patch: Any) -> Obj:
    if patch_type == JSON_PATCH:
        result = json_patch(current, patch)
    elif patch_type == MERGE_PATCH:
        result = json_merge_patch(current, patch)
    elif patch_type in (STRATEGIC_PATCH, APPLY_PATCH):
        if kind.custom_schema is not None:
            if patch_type == STRATEGIC_PATCH:
                raise errors.UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                )
            result = json_merge_patch(current, patch)
        else:
            result = strategic_merge_patch(current, patch, builtin_schema_name(kind) or None)
    else:
        raise errors.UnsupportedMediaType(f"unsupported patch type: {patch_type}")
    if not isinstance(result, dict):
        raise errors.BadRequest("the patch did not result in an object")
    return result


async def patch(
    store: ResourceStore,
    kind: Kind,
    namespace: str,
    name: str,
    patch_type: str,
    body: Any,
    opts: WriteOptions,
    warnings: list[str],
    subresource: str = "",
    force: bool = False,
) -> tuple[Obj, int]:
    """Apply a patch; returns the object and the HTTP code (201 when apply created it)."""
    if patch_type == APPLY_PATCH:
        try:
            await store.get(kind, namespace, name)
        except errors.NotFound:
            if subresource:
                raise
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {})["name"] = name
            return await store.create(kind, namespace, obj, opts, warnings), 201

    def mutate(current: Obj) -> Obj:
        return apply_patch(kind, current, patch_type, body)

    return (
        await store.replace_with(kind, namespace, name, mutate, opts, warnings, subresource),
        200,
    )


# -- scale ------------------------------------------------------------------


def scale_of(kind: Kind, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a Deployment, ReplicaSet or StatefulSet."""
    assert kind.scale is not None
    md = obj["metadata"]
    # Built-in kinds point at a LabelSelector object, custom resources (CRD
    # `labelSelectorPath`) at a selector string, or nowhere (an empty path).
    selector = meta.get_path(obj, kind.scale.selector) if kind.scale.selector else None
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: md[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in md
        },
        "spec": {"replicas": meta.get_path(obj, kind.scale.spec_replicas, 0)},
        "status": {
            "replicas": meta.get_path(obj, kind.scale.status_replicas, 0),
            "selector": selector
            if isinstance(selector, str)
            else str(selectors.label_selector_from_object(selector))
            if selector
            else "",
        },
    }


async def update_scale(
    store: ResourceStore,
    kind: Kind,
    namespace: str,
    name: str,
    change: Any,
    opts: WriteOptions,
    warnings: list[str],
) -> Obj:
    """Write a new Scale: `change` is a whole Scale (PUT) or a (patch type, body) pair."""
    assert kind.scale is not None
    spec_path = kind.scale.spec_replicas

    def mutate(obj: Obj) -> Obj:
        current = scale_of(kind, obj)
        if isinstance(change, tuple):
            new_scale = apply_patch(_SCALE_KIND, current, change[0], change[1])
        else:
            new_scale = change
            rv = (change.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(kind.plural, name, kind.group)
        replicas = (new_scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                name,
                [
                    errors.Cause(
                        "spec.replicas",
                        f"Invalid value: {orjson.dumps(replicas).decode()}: must be greater than or equal to 0",
                    )
                ],
                "autoscaling",
            )
        meta.set_path(obj, spec_path, replicas)
        return obj

    obj = await store.replace_with(kind, namespace, name, mutate, opts, warnings)
    return scale_of(kind, obj)


_SCALE_KIND = Kind(
    group="autoscaling",
    version="v1",
    kind="Scale",
    plural="scale",
    namespaced=True,
    schema_name="io.k8s.api.autoscaling.v1.Scale",
)
