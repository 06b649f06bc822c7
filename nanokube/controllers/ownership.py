"""Controller references: which owner controls an object, adoption and release.

An object has at most one owner reference with `controller: true`; that owner
is the only controller that manages it. Upstream's `ControllerRefManager`
(`pkg/controller/controller_ref_manager.go`) decides, for every candidate an
owner's selector could cover:

- controlled by this owner and still matching: claimed;
- controlled by this owner but no longer matching: released (the reference is
  removed), unless the owner is being deleted;
- controlled by another owner: left alone;
- an orphan that matches, not being deleted, while the owner is not being
  deleted: adopted (our controller reference is added), after a live read of
  the owner confirms it still exists with the same uid (`can_adopt`), so that
  a deleted-and-recreated owner never adopts through a stale cache.

Adoption and release are merge patches that carry the object's
resourceVersion, so a concurrent change makes them fail with a Conflict and
the owner is reconciled again rather than overwriting someone else's edit.

The other half is telling the owner when one of its objects changes:
`OwnedEvents` holds the informer handlers upstream's ReplicaSet controller
wrote (`addPod`/`updatePod`/`deletePod`) and the DaemonSet, StatefulSet and
Deployment controllers repeat for their own pair of kinds; each controller
declares only its owner kind and what differs (expectations, who may adopt
an orphan).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.kinds import Kind
from nanokube.api.selectors import LabelSelector
from nanokube.client.cache import key_of
from nanokube.client.informer import Informer
from nanokube.client.interface import Client
from nanokube.controllers.expectations import Expectations

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# The informer index of objects by their owners' uids (`cache.by_owner_uid`): one
# name, so controllers sharing an informer share the index.
OWNER_INDEX = "owner-uid"


def controller_ref(obj: Obj) -> Obj | None:
    """The owner reference with `controller: true`, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def controlled_by(informer: Informer, uid: str) -> list[Obj]:
    """The cached objects that the owner with `uid` controls (`informer` has `OWNER_INDEX`)."""
    return [
        obj
        for obj in informer.by_index(OWNER_INDEX, uid)
        if (controller_ref(obj) or {}).get("uid") == uid
    ]


def resolve(owners: Informer, obj: Obj) -> Obj | None:
    """`resolveControllerRef`: the owner in `owners`' cache that controls `obj`, or None.

    Kind and uid must agree too: a reference to a deleted owner must not reach
    a new one that took its name.
    """
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != owners.kind.kind:
        return None
    owner = owners.get(ref.get("name", ""), meta.namespace(obj))
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return owner


def selecting(owners: Informer, obj: Obj) -> list[Obj]:
    """The owners in `obj`'s namespace whose (non-empty, valid) selector covers it.

    For an orphan: any of them may adopt it, so each is told.
    """
    found = []
    for owner in owners.list(meta.namespace(obj)):
        try:
            sel = selectors.label_selector_from_object((owner.get("spec") or {}).get("selector"))
        except errors.StatusError:
            continue
        if not sel.empty and sel.matches_object(obj):
            found.append(owner)
    return found


class OwnedEvents:
    """Informer handlers for owned objects: each event enqueues the owner it concerns.

    - added: its owner, with one expected creation ticked off; an orphan: every
      owner that may adopt it (`adopters`);
    - updated (resyncs with an unchanged resourceVersion are ignored): the old
      owner too when the controller reference changed; an orphan whose labels
      or reference changed: the owners that may adopt it;
    - deleted: its owner, with the deletion ticked off.

    With `deleting_is_deleted`, an object being deleted counts as deleted at
    once (upstream's ReplicaSet and DaemonSet: a graceful pod deletion may
    take long, and the owner should replace the pod meanwhile).

    With `batch`, an update that leaves ownership alone (same labels, owner
    references and deletion state: a binding, a status change) enqueues the
    owner through `batch` instead, typically a short delay: ten thousand pods
    turning Ready then cost a few owner syncs, not ten thousand.
    """

    def __init__(
        self,
        owners: Informer,
        enqueue: Callable[[Obj], None],
        *,
        expectations: Expectations | None = None,
        adopters: Callable[[Obj], Iterable[Obj]] | None = None,
        deleting_is_deleted: bool = False,
        batch: Callable[[Obj], None] | None = None,
    ) -> None:
        # The owners' informer, to resolve controller references.
        self.owners = owners
        # The controller's enqueue: events only put owner keys on its queue.
        self.enqueue = enqueue
        # The controller's expectations, ticked off by events (None: it keeps none).
        self.expectations = expectations
        # The owners an orphan should be shown to (None: orphans wait for the owner's sync).
        self.adopters = adopters
        self.deleting_is_deleted = deleting_is_deleted
        # How to enqueue an owner for an update that does not touch ownership.
        self.batch = batch

    def register(self, informer: Informer) -> None:
        """Handle the events of `informer` (the owned kind)."""
        informer.add_event_handler(self.on_add, self.on_update, self.on_delete)

    def owner_of(self, obj: Obj) -> Obj | None:
        return resolve(self.owners, obj)

    def on_add(self, obj: Obj) -> None:
        if self.deleting_is_deleted and obj["metadata"].get("deletionTimestamp"):
            self.on_delete(obj)  # seen for the first time already going (a relist)
            return
        owner = self.owner_of(obj)
        if owner is not None:
            if self.expectations is not None:
                self.expectations.creation_observed(key_of(owner))
            self.enqueue(owner)
        elif controller_ref(obj) is None:
            self._enqueue_adopters(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return  # a resync: nothing changed
        labels_changed = meta.labels(old) != meta.labels(new)
        if self.batch is not None and not labels_changed and _same_ownership(old, new):
            owner = self.owner_of(new)
            if owner is not None:
                self.batch(owner)
            return
        if self.deleting_is_deleted and new["metadata"].get("deletionTimestamp"):
            self.on_delete(new)
            if labels_changed:
                self.on_delete(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            previous = self.owner_of(old)
            if previous is not None:
                self.enqueue(previous)
        owner = self.owner_of(new)
        if owner is not None:
            self.enqueue(owner)
        elif new_ref is None and (labels_changed or old_ref != new_ref):
            self._enqueue_adopters(new)

    def on_delete(self, obj: Obj) -> None:
        owner = self.owner_of(obj)
        if owner is not None:
            if self.expectations is not None:
                self.expectations.deletion_observed(key_of(owner), key_of(obj))
            self.enqueue(owner)

    def _enqueue_adopters(self, orphan: Obj) -> None:
        if self.adopters is not None:
            for candidate in self.adopters(orphan):
                self.enqueue(candidate)


def _same_ownership(old: Obj, new: Obj) -> bool:
    o, n = old["metadata"], new["metadata"]
    return o.get("ownerReferences") == n.get("ownerReferences") and bool(
        o.get("deletionTimestamp")
    ) == bool(n.get("deletionTimestamp"))


def new_controller_ref(owner: Obj, kind: Kind) -> Obj:
    """A reference making `owner` the controller of an object, blocking its foreground deletion."""
    md = owner["metadata"]
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_checker(client: Client, kind: Kind, owner: Obj) -> Callable[[], Awaitable[None]]:
    """`RecheckDeletionTimestamp`: a live read, done at most once, before the first adoption.

    Raises when the owner is gone, was recreated (another uid) or is being deleted.
    """
    md = owner["metadata"]
    checked = False

    async def check() -> None:
        nonlocal checked
        if checked:
            return
        fresh = await client.get(kind, md["name"], md.get("namespace", ""))
        fmd = fresh["metadata"]
        if fmd.get("uid") != md.get("uid"):
            raise errors.Conflict(
                f"original {kind.kind} {md.get('namespace')}/{md['name']} is gone: got uid "
                f"{fmd.get('uid')}, wanted {md.get('uid')}"
            )
        if fmd.get("deletionTimestamp"):
            raise errors.Conflict(
                f"{md.get('namespace')}/{md['name']} has just been deleted at {fmd['deletionTimestamp']}"
            )
        checked = True

    return check


async def claim(
    client: Client,
    kind: Kind,
    candidates: list[Obj],
    owner: Obj,
    owner_kind: Kind,
    selector: LabelSelector,
    can_adopt: Callable[[], Awaitable[None]],
) -> list[Obj]:
    """The candidates `owner` controls after adopting matching orphans and releasing strays.

    Returns the objects as they are after any patch. Errors of individual patches
    (other than the object vanishing) are raised after every candidate was tried,
    so one bad object does not stop the owner from seeing the others.
    """
    owner_md = owner["metadata"]
    owner_uid = owner_md["uid"]
    owner_deleting = bool(owner_md.get("deletionTimestamp"))
    claimed: list[Obj] = []
    failure: Exception | None = None
    for obj in candidates:
        ref = controller_ref(obj)
        matches = selector.matches_object(obj)
        try:
            if ref is not None:
                if ref.get("uid") != owner_uid:
                    continue
                if matches:
                    claimed.append(obj)
                elif not owner_deleting:
                    await _release(client, kind, obj, owner_uid)
                continue
            if owner_deleting or not matches or obj["metadata"].get("deletionTimestamp"):
                continue
            await can_adopt()
            claimed.append(await _adopt(client, kind, obj, new_controller_ref(owner, owner_kind)))
        except errors.NotFound:
            continue
        except errors.StatusError as e:
            failure = failure or e
    if failure is not None:
        raise failure
    return claimed


async def _adopt(client: Client, kind: Kind, obj: Obj, ref: Obj) -> Obj:
    md = obj["metadata"]
    refs = [*(md.get("ownerReferences") or ()), ref]
    log.info(
        "adopting resource=%s object=%s/%s owner=%s/%s",
        kind.plural,
        md.get("namespace"),
        md["name"],
        ref["kind"],
        ref["name"],
    )
    patch = {"metadata": {"ownerReferences": refs, "resourceVersion": md["resourceVersion"]}}
    return await client.patch(kind, md["name"], patch, md.get("namespace", ""))


async def _release(client: Client, kind: Kind, obj: Obj, owner_uid: str) -> None:
    md = obj["metadata"]
    refs = [r for r in md.get("ownerReferences") or () if r.get("uid") != owner_uid]
    log.info("releasing resource=%s object=%s/%s", kind.plural, md.get("namespace"), md["name"])
    patch = {
        "metadata": {"ownerReferences": refs or None, "resourceVersion": md["resourceVersion"]}
    }
    await client.patch(kind, md["name"], patch, md.get("namespace", ""))
