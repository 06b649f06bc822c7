"""DefaultStorageClass admission: a claim that names no class gets the default one.

Upstream's `plugin/pkg/admission/storage/storageclass/setdefault`: on the
creation of a PersistentVolumeClaim whose `spec.storageClassName` is unset
(null, not `""`, which asks for no class) and that has no
`volume.beta.kubernetes.io/storage-class` annotation, the default
StorageClass — one annotated `storageclass.kubernetes.io/is-default-class:
"true"` (or the beta key) — is written into `spec.storageClassName`. With
several defaults the newest wins (then the name, for a stable choice); with
none the claim is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanokube.api.resources.core_storage import STORAGE_CLASS_ANNOTATION
from nanokube.api.resources.groups import STORAGE_CLASS, is_default_storage_class

if TYPE_CHECKING:
    from nanokube.apiserver.rest import ResourceStore

Obj = dict[str, Any]


def pick_default(classes: list[Obj]) -> Obj | None:
    """The default class among `classes`: the newest, then the first by name."""
    defaults = [c for c in classes if is_default_storage_class(c)]
    if not defaults:
        return None
    defaults.sort(key=lambda c: c["metadata"].get("name", ""))
    return max(defaults, key=lambda c: c["metadata"].get("creationTimestamp") or "")


async def default_storage_class(resources: ResourceStore, pvc: Obj) -> None:
    """Set `spec.storageClassName` of a claim being created to the default class (in place)."""
    spec = pvc.setdefault("spec", {})
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    if spec.get("storageClassName") is not None or STORAGE_CLASS_ANNOTATION in annotations:
        return
    await resources.fresh()
    classes = [obj for _, obj in resources.cache.prefix(STORAGE_CLASS.prefix()).items()]
    chosen = pick_default(classes)
    if chosen is not None:
        spec["storageClassName"] = chosen["metadata"]["name"]
