"""Pure rules of Deployments over their ReplicaSets (upstream's `deployment/util`).

No I/O here: the functions read and change plain dicts, so the controller
(`deployment.py`, `deployment_rollout.py`) stays a readable sequence of steps.

- Identity: a ReplicaSet belongs to a template when their templates are equal
  ignoring the `pod-template-hash` label; the hash is FNV-32a over a canonical
  rendering of the template (sorted-key JSON, where upstream deep-prints the Go
  struct) plus the collision count, written with `safe_encode` as upstream's
  `rand.SafeEncodeString` does. Stable and deterministic, not byte-equal to
  upstream's.
- Revisions: `deployment.kubernetes.io/revision` on each ReplicaSet; a
  ReplicaSet that becomes new again (a rollback) keeps its former numbers in
  `revision-history`.
- Sizes: `maxSurge` rounds percentages up and `maxUnavailable` down, and both
  zero means one unavailable (`resolve_fenceposts`); `desired-replicas` and
  `max-replicas` annotations record the size a ReplicaSet was made for, so
  proportional scaling can share out a resize.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import orjson

from nanokube.api.meta import parse_time
from nanokube.api.patch_json import copy_json

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_REVISION_HISTORY_CHARS = 2000

# Annotations of a Deployment that are never copied onto its ReplicaSets.
_SKIP_COPY = frozenset(
    {
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deployment.kubernetes.io/error-selector-overlapping-with",
        "deployment.kubernetes.io/selector-updated-at",
    }
)

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


# -- identity ---------------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """`rand.SafeEncodeString`: no vowels, no 0/1/3, so a hash never spells a word."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """The `pod-template-hash` of a template (see the module docstring)."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF)
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: Obj) -> Obj:
    t = copy_json(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
        if not labels:
            del t["metadata"]["labels"]
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _without_hash(a) == _without_hash(b)


def template_of(obj: Obj) -> Obj:
    return (obj.get("spec") or {}).get("template") or {}


def replicas(obj: Obj) -> int:
    """`spec.replicas` (defaulted to 1 by the server)."""
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_count(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def created(obj: Obj) -> tuple[float, str]:
    """Sort key of upstream's ReplicaSetsByCreationTimestamp: oldest first, then by name."""
    md = obj.get("metadata") or {}
    stamp = md.get("creationTimestamp")
    return (parse_time(stamp) if stamp else 0.0, md.get("name", ""))


def find_new(deployment: Obj, replica_sets: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash)."""
    template = template_of(deployment)
    for rs in sorted(replica_sets, key=created):
        if equal_ignore_hash(template_of(rs), template):
            return rs
    return None


def find_old(deployment: Obj, replica_sets: list[Obj], new: Obj | None) -> list[Obj]:
    new_uid = new["metadata"]["uid"] if new is not None else None
    return [rs for rs in replica_sets if rs["metadata"].get("uid") != new_uid]


def active(replica_sets: list[Obj | None]) -> list[Obj]:
    """`FilterActiveReplicaSets`: those that want pods."""
    return [rs for rs in replica_sets if rs is not None and replicas(rs) > 0]


def total_replicas(replica_sets: list[Obj | None]) -> int:
    """Sum of `spec.replicas`."""
    return sum(replicas(rs) for rs in replica_sets if rs is not None)


def total_status(replica_sets: list[Obj | None], field: str) -> int:
    """Sum of a status count (`replicas`, `readyReplicas`, `availableReplicas`)."""
    return sum(status_count(rs, field) for rs in replica_sets if rs is not None)


# -- revisions and annotations ------------------------------------------------------


def annotations_of(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def revision(obj: Obj) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(replica_sets: list[Obj]) -> int:
    return max((revision(rs) for rs in replica_sets), default=0)


def set_new_rs_annotations(deployment: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """`SetNewReplicaSetAnnotations`: copy the Deployment's annotations, bump the revision.

    Returns whether anything changed; mutates `rs`.
    """
    changed = copy_annotations(deployment, rs)
    notes = rs["metadata"].setdefault("annotations", {})
    old = notes.get(REVISION)
    try:
        old_number = int(old) if old is not None else 0
    except ValueError:
        old_number = 0
    if old_number < int(new_revision):
        notes[REVISION] = new_revision
        changed = True
        if old is not None:
            # Rolled back to: remember the revisions this ReplicaSet served before.
            history = [h for h in notes.get(REVISION_HISTORY, "").split(",") if h]
            history.append(old)
            while history and len(",".join(history)) > MAX_REVISION_HISTORY_CHARS:
                history.pop(0)
            notes[REVISION_HISTORY] = ",".join(history)
    if not exists:
        desired = replicas(deployment)
        changed = set_replicas_annotations(rs, desired, desired + max_surge(deployment)) or changed
    return changed


def copy_annotations(deployment: Obj, rs: Obj) -> bool:
    notes = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in annotations_of(deployment).items():
        if key in _SKIP_COPY or notes.get(key) == value:
            continue
        notes[key] = value
        changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    notes = annotations_of(rs)
    return notes.get(DESIRED_REPLICAS) != str(desired) or notes.get(MAX_REPLICAS) != str(maximum)


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    if not replicas_annotations_need_update(rs, desired, maximum):
        return False
    notes = rs["metadata"].setdefault("annotations", {})
    notes[DESIRED_REPLICAS] = str(desired)
    notes[MAX_REPLICAS] = str(maximum)
    return True


def _int_annotation(rs: Obj, key: str) -> int | None:
    value = annotations_of(rs).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


# -- sizes --------------------------------------------------------------------------


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """`intstr.GetScaledValueFromIntOrPercent`."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def is_rolling(deployment: Obj) -> bool:
    return ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "RollingUpdate"


def resolve_fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods; never both zero."""
    rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(deployment)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: Obj) -> int:
    return resolve_fenceposts(deployment)[0] if is_rolling(deployment) else 0


def max_unavailable(deployment: Obj) -> int:
    if not is_rolling(deployment) or replicas(deployment) == 0:
        return 0
    return min(resolve_fenceposts(deployment)[1], replicas(deployment))


def new_rs_new_replicas(deployment: Obj, all_rss: list[Obj], new: Obj) -> int:
    """`NewRSNewReplicas`: how far the new ReplicaSet may grow in this step.

    Each ReplicaSet counts for the larger of its `spec.replicas` and its last
    observed pod count, so pods a ReplicaSet was just asked to delete still take
    their surge slot until it reports them gone (upstream counts specs only, and
    can briefly run more than `replicas + maxSurge` pods).
    """
    if not is_rolling(deployment):
        return replicas(deployment)
    current = sum(max(replicas(rs), status_count(rs, "replicas")) for rs in all_rss)
    max_total = replicas(deployment) + max_surge(deployment)
    if current >= max_total:
        return replicas(new)
    grow = min(max_total - current, replicas(deployment) - replicas(new))
    return replicas(new) + grow


def is_saturated(deployment: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet was made for this size and all its pods are available."""
    if rs is None:
        return False
    desired = replicas(deployment)
    return (
        replicas(rs) == desired
        and desired_replicas_annotation(rs) == desired
        and status_count(rs, "availableReplicas") == desired
    )


def proportion(rs: Obj, deployment: Obj, to_add: int, added: int) -> int:
    """`GetProportion`: this ReplicaSet's share of a resize of `to_add` pods."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, deployment)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(rs: Obj, deployment: Obj) -> int:
    if replicas(deployment) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(deployment) + max_surge(deployment)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_count(deployment, "replicas")
    if annotated == 0:
        return 0
    # Go's math.Round rounds halves away from zero.
    exact = replicas(rs) * deployment_replicas / annotated
    return int(math.floor(exact + 0.5)) - replicas(rs)


def find_active_or_latest(new: Obj | None, old: list[Obj]) -> Obj | None:
    """The only active ReplicaSet, or the newest when none is active; None if several are."""
    if new is None and not old:
        return None
    newest_first = sorted(old, key=created, reverse=True)
    wanting = active([*newest_first, new])
    if not wanting:
        return new if new is not None else newest_first[0]
    return wanting[0] if len(wanting) == 1 else None
