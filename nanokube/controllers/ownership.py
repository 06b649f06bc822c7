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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.api.selectors import LabelSelector
from nanokube.client.interface import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def controller_ref(obj: Obj) -> Obj | None:
    """The owner reference with `controller: true`, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


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
