"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

Upstream (`pkg/controller/history`, and each controller's `getPatch`) keeps
every template a StatefulSet or DaemonSet has had as an immutable
ControllerRevision owned by it:

- `data` is a strategic-merge patch that replaces the whole pod template
  (`{"spec": {"template": {..., "$patch": "replace"}}}`), so applying a
  revision to the owner restores that template;
- the revision is named `<owner>-<hash>`, where the hash covers the data and
  the owner's `status.collisionCount`; it carries the template's labels plus
  `controller.kubernetes.io/hash`, and a strictly increasing `revision` number;
- pods are labelled `controller-revision-hash` so a controller can tell which
  revision made each pod: a StatefulSet's pods carry the revision's name, a
  DaemonSet's pods its hash (as upstream).

`sync_history` is the step both controllers share: claim the owner's
revisions (adopting and releasing them as its pods), find or create the
revision of the current template (a revision equal to an older one is reused
and renumbered, as on a rollback), bump `collisionCount` when a different
revision already holds the name, and report the current and update
revisions. `truncate_history` deletes the oldest revisions beyond
`spec.revisionHistoryLimit` that no live pod and no status field uses.

The hash is FNV-32a over canonical JSON (see `deployment_util.compute_hash`),
stable within nanokube but not byte-equal to upstream's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import CONTROLLER_REVISION
from nanokube.api.selectors import LabelSelector
from nanokube.client.interface import Client
from nanokube.controllers import ownership
from nanokube.controllers.deployment_util import compute_hash

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# The pod label naming the revision that made a pod (StatefulSet and DaemonSet pods).
POD_REVISION_LABEL = "controller-revision-hash"
# The label upstream's history package puts on each revision.
REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
# upstream's ControllerRevisionName truncates the owner's name to keep the result a valid name.
_MAX_PREFIX = 223


def template_patch(owner: Obj) -> Obj:
    """The revision data of `owner`'s current pod template (upstream's `getPatch`)."""
    template = copy_json((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision holds (its data without the `$patch` directive)."""
    template = copy_json(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def revision_name(owner_name: str, hash_: str) -> str:
    return f"{owner_name[:_MAX_PREFIX]}-{hash_}"


def revision_hash(revision: Obj) -> str:
    """The hash a revision is known by: its label, else the tail of its name."""
    label = meta.labels(revision).get(REVISION_HASH_LABEL)
    return label or meta.name(revision).rsplit("-", 1)[-1]


def new_revision(owner: Obj, owner_kind: Kind, number: int, collision_count: int) -> Obj:
    """`history.NewControllerRevision` for `owner`'s current template."""
    data = template_patch(owner)
    hash_ = compute_hash(data, collision_count)
    template_labels = (((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(meta.name(owner), hash_),
            "namespace": meta.namespace(owner),
            "labels": {**template_labels, REVISION_HASH_LABEL: hash_},
            "ownerReferences": [ownership.new_controller_ref(owner, owner_kind)],
        },
        "data": data,
        "revision": number,
    }


def same_data(a: Obj, b: Obj) -> bool:
    """`history.EqualRevision`: two revisions hold the same template."""
    return (a.get("data") or {}) == (b.get("data") or {})


def sort_revisions(revisions: list[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time, then name (upstream's order)."""
    return sorted(
        revisions,
        key=lambda r: (
            r.get("revision", 0),
            (r.get("metadata") or {}).get("creationTimestamp", ""),
            meta.name(r),
        ),
    )


@dataclass
class History:
    """What `sync_history` found: every owned revision (oldest first) and the two in use."""

    revisions: list[Obj]
    current: Obj
    update: Obj
    collision_count: int


async def sync_history(
    client: Client,
    owner: Obj,
    owner_kind: Kind,
    candidates: list[Obj],
    selector: LabelSelector,
    can_adopt: Callable[[], Awaitable[None]],
    current_name: str | None,
) -> History:
    """Claim `owner`'s revisions, then find or create its template's; see the module docstring.

    `candidates` are the revisions of the owner's namespace, claimed by its pod
    `selector` as its pods are (`ownership.claim`); `current_name` is the
    revision the owner's status calls current (StatefulSet), or None to take
    the update revision as current when nothing else is known.
    """
    owned = await ownership.claim(
        client, CONTROLLER_REVISION, candidates, owner, owner_kind, selector, can_adopt
    )
    revisions = sort_revisions(owned)
    collision_count = int((owner.get("status") or {}).get("collisionCount") or 0)
    next_number = (revisions[-1].get("revision", 0) if revisions else 0) + 1
    wanted = new_revision(owner, owner_kind, next_number, collision_count)
    equal = [r for r in revisions if same_data(r, wanted)]
    if equal and equal[-1] is revisions[-1]:
        update = revisions[-1]  # the latest revision is already this template
    elif equal:
        # A rollback to an older template: renumber that revision as the newest.
        update = await client.patch(
            CONTROLLER_REVISION,
            meta.name(equal[-1]),
            {"revision": next_number},
            meta.namespace(owner),
        )
        revisions = sort_revisions([update if r is equal[-1] else r for r in revisions])
    else:
        update, collision_count = await _create(client, owner, owner_kind, wanted, collision_count)
        revisions = sort_revisions([*revisions, update])
    current = next((r for r in revisions if meta.name(r) == current_name), update)
    return History(revisions, current, update, collision_count)


async def _create(
    client: Client, owner: Obj, owner_kind: Kind, wanted: Obj, collision_count: int
) -> tuple[Obj, int]:
    """Create `wanted`; a name taken by a different revision bumps the collision count."""
    while True:
        try:
            return await client.create(CONTROLLER_REVISION, wanted), collision_count
        except errors.AlreadyExists:
            existing = await client.get(
                CONTROLLER_REVISION, meta.name(wanted), meta.namespace(owner)
            )
            ref = ownership.controller_ref(existing)
            if same_data(existing, wanted) and ref and ref.get("uid") == owner["metadata"]["uid"]:
                return existing, collision_count
            collision_count += 1
            log.info(
                "revision hash collision owner=%s/%s revision=%s collisionCount=%d",
                meta.namespace(owner),
                meta.name(owner),
                meta.name(wanted),
                collision_count,
            )
            wanted = new_revision(owner, owner_kind, wanted.get("revision", 1), collision_count)


async def truncate_history(client: Client, owner: Obj, history: History, in_use: set[str]) -> None:
    """Delete the oldest revisions beyond `spec.revisionHistoryLimit` (default 10).

    The current and update revisions and those named in `in_use` (the revisions
    live pods were made from) are never deleted.
    """
    limit = (owner.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    keep = in_use | {meta.name(history.current), meta.name(history.update)}
    unused = [r for r in history.revisions if meta.name(r) not in keep]
    for revision in unused[: max(len(unused) - limit, 0)]:
        try:
            await client.delete(CONTROLLER_REVISION, meta.name(revision), meta.namespace(revision))
        except errors.NotFound:
            pass
