"""Which PersistentVolume serves a claim: upstream's volume matching, as pure functions.

`find_best_match` is `FindMatchingVolume` (`pkg/controller/volume/persistentvolume/util`):
a volume pre-bound to the claim wins (unless its node affinity rejects the
claim's node); otherwise, among Available volumes of the claim's class,
volumeMode and access modes (a superset), at least as large as the request,
matching the claim's selector and not being deleted, the smallest. While a
WaitForFirstConsumer claim's node is unknown only pre-bound volumes count;
once known, a volume must admit that node (its `nodeAffinity`).
"""

from __future__ import annotations

from typing import Any

from nanokube.api import errors, meta, scheduling, selectors
from nanokube.api.resources.core_storage import STORAGE_CLASS_ANNOTATION
from nanokube.api.validators import parse_quantity

Obj = dict[str, Any]


def class_of(obj: Obj) -> str:
    """The storage class of a claim or volume (the beta annotation wins, as upstream)."""
    annotations = obj["metadata"].get("annotations") or {}
    if STORAGE_CLASS_ANNOTATION in annotations:
        return str(annotations[STORAGE_CLASS_ANNOTATION])
    return (obj.get("spec") or {}).get("storageClassName") or ""


def annotations_of(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def _requested(claim: Obj) -> Any:
    return parse_quantity(
        (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
            "storage", "0"
        )
    )


def _capacity(volume: Obj) -> Any:
    return parse_quantity(((volume.get("spec") or {}).get("capacity") or {}).get("storage", "0"))


def is_volume_bound_to_claim(volume: Obj, claim: Obj) -> bool:
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    if ref.get("name") != meta.name(claim) or ref.get("namespace") != meta.namespace(claim):
        return False
    return not ref.get("uid") or ref["uid"] == claim["metadata"].get("uid")


def node_affinity_admits(volume: Obj, node: Obj) -> bool:
    """The volume's required node affinity matches the node (no affinity: any node)."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    return scheduling.matches_node_selector(required, node)


def mismatch(volume: Obj, claim: Obj) -> str:
    """Why a volume cannot serve the claim (upstream's checkVolumeSatisfyClaim), or ""."""
    if _capacity(volume) < _requested(claim):
        return "requested PV is too small"
    if class_of(volume) != class_of(claim):
        return "storageClassName does not match"
    vspec, cspec = volume.get("spec") or {}, claim.get("spec") or {}
    if (vspec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
        return "incompatible volumeMode"
    if not set(cspec.get("accessModes") or ()) <= set(vspec.get("accessModes") or ()):
        return "incompatible accessMode"
    return ""


def find_best_match(
    claim: Obj, volumes: list[Obj], delay_binding: bool, node: Obj | None = None
) -> Obj | None:
    """upstream's FindMatchingVolume (see the module docstring)."""
    try:
        selector = selectors.label_selector_from_object((claim.get("spec") or {}).get("selector"))
    except errors.StatusError:
        return None
    has_selector = (claim.get("spec") or {}).get("selector") is not None
    best: Obj | None = None
    for volume in volumes:
        spec = volume.get("spec") or {}
        if spec.get("claimRef") and not is_volume_bound_to_claim(volume, claim):
            continue
        if _capacity(volume) < _requested(claim) or volume["metadata"].get("deletionTimestamp"):
            continue
        cspec = claim.get("spec") or {}
        if (spec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
            continue
        fits_node = node is None or node_affinity_admits(volume, node)
        if is_volume_bound_to_claim(volume, claim):
            return volume if fits_node else None
        if node is None and delay_binding:
            continue  # the node is not known yet: only pre-bound volumes
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if has_selector and not selector.matches_object(volume):
            continue
        if class_of(volume) != class_of(claim) or not fits_node:
            continue
        if not set(cspec.get("accessModes") or ()) <= set(spec.get("accessModes") or ()):
            continue
        if best is None or _capacity(best) > _capacity(volume):
            best = volume
    return best
