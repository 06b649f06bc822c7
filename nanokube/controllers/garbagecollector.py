"""The garbage collector: delete objects whose owners are all gone; orphan and foreground.

As upstream's `pkg/controller/garbagecollector`, informers over every kind that
can have owners feed a graph of owner references (`gc_graph`); graph changes
queue uids on two queues.

`reconcile(uid)` (upstream's attemptToDeleteItem) for an object that may be garbage:

1. read it live; gone, or another object under the same name: forget the node;
2. being deleted in the foreground: once no dependent blocks it, remove its
   `foregroundDeletion` finalizer (the server then deletes it); until then
   make sure each blocking dependent is being deleted;
3. classify each owner by a live GET (uid must match): *dangling* (gone),
   *waiting* (being deleted in the foreground) or *solid*;
4. with a solid owner, only drop the references to dangling and waiting
   owners; with waiting owners and dependents of its own, delete it in the
   foreground too; otherwise delete it with the policy its own finalizers ask
   for (orphan, foreground), by default in the background.

`orphan(uid)` (attemptToOrphan), for an owner deleted with the `orphan`
finalizer: remove its references from every dependent, then the finalizer.

Owners known to be absent are remembered (uids are never reused), saving a
GET per dependent when an owner with many dependents goes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.client import kinds as kind_index
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.client.workqueue import WorkQueue
from nanokube.controllers.base import Controller
from nanokube.controllers.gc_graph import FOREGROUND, ORPHAN, Graph, Node, Work

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ABSENT_CACHE_SIZE = 500
# Events never own anything and are many: upstream's collector ignores them too.
_IGNORED = {("v1", "Event"), ("events.k8s.io/v1", "Event")}
_EDIT_ATTEMPTS = 5


def collected_kinds(index: kind_index.KindIndex | None = None) -> list[Kind]:
    """Every served kind the collector can list, watch and delete (Events excepted)."""
    found = []
    for kind in index or kind_index.builtin():
        if (kind.api_version, kind.kind) in _IGNORED:
            continue
        if all(v in kind.verbs for v in ("list", "watch", "delete")):
            found.append(kind)
    return found


class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    workers = 5

    def __init__(
        self,
        client: Client,
        informers: SharedInformerFactory,
        kinds: Iterable[Kind] | None = None,
    ) -> None:
        super().__init__(client, informers)
        # Kinds by apiVersion+kind, to turn an owner reference into an API call.
        self.kinds = kind_index.KindIndex(kinds if kinds is not None else collected_kinds())
        # Who owns whom, as the informers last saw it.
        self.graph = Graph()
        # Owners being deleted with the orphan finalizer.
        self.orphan_queue: WorkQueue[str] = WorkQueue(f"{self.name}-orphan")
        # uids of owners verified absent (LRU).
        self.absent: OrderedDict[str, None] = OrderedDict()
        for kind in self.kinds:
            informer = self.watch(informers.informer(kind))
            informer.add_event_handler(
                self._observed, lambda _old, new: self._observed(new), self._deleted
            )

    def work_queues(self) -> list[tuple[WorkQueue[str], Callable[[str], Awaitable[None]] | None]]:
        return [(self.queue, None), (self.orphan_queue, self.orphan)]

    # -- graph changes from the informers --------------------------------------

    def _observed(self, obj: Obj) -> None:
        self._queue_work(self.graph.observe(obj))

    def _deleted(self, obj: Obj) -> None:
        uid = (obj.get("metadata") or {}).get("uid", "")
        node = self.graph.get(uid)
        if node is not None and node.dependents:
            self._remember_absent(uid)
        self._queue_work(self.graph.forget(uid))

    def _queue_work(self, work: Work) -> None:
        for uid in work.delete:
            self.queue.add(uid)
        for uid in work.orphan:
            self.orphan_queue.add(uid)

    def _remember_absent(self, uid: str) -> None:
        self.absent[uid] = None
        self.absent.move_to_end(uid)
        if len(self.absent) > ABSENT_CACHE_SIZE:
            self.absent.popitem(last=False)

    # -- attempt to delete -------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        node = self.graph.get(key)
        if node is None:
            return
        latest = await self._read(node)
        if latest is None:
            self._queue_work(self.graph.forget(node.uid))
            return
        if node.deleting_dependents:
            await self._finish_foreground(node)
            return
        refs = (latest.get("metadata") or {}).get("ownerReferences") or []
        if not refs:
            return
        solid, dangling, waiting = await self._classify(latest, refs)
        if solid:
            if dangling or waiting:
                gone = {r["uid"] for r in dangling + waiting}
                log.info(
                    "dropping owner references object=%s owners=%s", _describe(node), sorted(gone)
                )
                await self._edit(node, lambda md: _drop_owner_refs(md, gone))
            return
        if waiting and node.dependents:
            if any(d.deleting_dependents for d in self.graph.dependents(node)):
                # A dependent of ours waits for us while our owner waits for us: break the
                # cycle by no longer blocking the waiting owners.
                uids = {r["uid"] for r in waiting}
                await self._edit(node, lambda md: _unblock_owner_refs(md, uids))
            await self._delete(node, latest, "Foreground")
            return
        finalizers = (latest.get("metadata") or {}).get("finalizers") or ()
        policy = (
            "Orphan"
            if ORPHAN in finalizers
            else "Foreground"
            if FOREGROUND in finalizers
            else "Background"
        )
        await self._delete(node, latest, policy)

    async def _finish_foreground(self, node: Node) -> None:
        blocking = self.graph.blocking_dependents(node)
        if not blocking:
            log.info("foreground deletion done object=%s", _describe(node))
            await self._edit(node, lambda md: _drop_finalizer(md, FOREGROUND))
            return
        for dependent in blocking:
            if not dependent.deleting_dependents:
                self.queue.add(dependent.uid)

    async def _classify(self, obj: Obj, refs: list[Obj]) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """(solid, dangling, waiting) owner references, each owner checked by a live GET."""
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        namespace = (obj.get("metadata") or {}).get("namespace", "")
        for ref in refs:
            uid = ref.get("uid", "")
            if uid in self.absent:
                dangling.append(ref)
                continue
            kind = self._kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            try:
                owner = await self.client.get(
                    kind, ref.get("name", ""), namespace if kind.namespaced else ""
                )
            except errors.NotFound:
                owner = None
            omd = (owner or {}).get("metadata") or {}
            if owner is None or omd.get("uid") != uid:
                self._remember_absent(uid)
                dangling.append(ref)
            elif omd.get("deletionTimestamp") and FOREGROUND in (omd.get("finalizers") or ()):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    # -- attempt to orphan ------------------------------------------------------

    async def orphan(self, key: str) -> None:
        """Free every dependent of an owner deleted with `orphan`, then let the owner go."""
        node = self.graph.get(key)
        if node is None:
            return
        for dependent in self.graph.dependents(node):
            log.info("orphaning object=%s owner=%s", _describe(dependent), _describe(node))
            await self._edit(dependent, lambda md: _drop_owner_refs(md, {node.uid}))
        await self._edit(node, lambda md: _drop_finalizer(md, ORPHAN))

    # -- API calls -------------------------------------------------------------

    def _kind(self, api_version: str, kind: str) -> Kind:
        found = self.kinds.by_kind(api_version, kind)
        if found is None:
            raise errors.NotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return found

    async def _read(self, node: Node) -> Obj | None:
        """The object live, or None if it is gone (or is another object by that name)."""
        kind = self._kind(node.api_version, node.kind)
        try:
            obj = await self.client.get(kind, node.name, node.namespace if kind.namespaced else "")
        except errors.NotFound:
            return None
        return obj if obj["metadata"].get("uid") == node.uid else None

    async def _delete(self, node: Node, latest: Obj, policy: str) -> None:
        log.info("deleting object=%s propagation=%s", _describe(node), policy)
        md = latest["metadata"]
        try:
            await self.client.delete(
                self._kind(node.api_version, node.kind),
                md["name"],
                md.get("namespace", ""),
                propagation_policy=policy,
                preconditions={"uid": node.uid},
            )
        except errors.NotFound:
            return

    async def _edit(self, node: Node, change: Callable[[Obj], bool]) -> None:
        """Read-modify-write of an object's metadata, retried on conflict; gone is done."""
        for attempt in range(_EDIT_ATTEMPTS):
            obj = await self._read(node)
            if obj is None or not change(obj["metadata"]):
                return
            try:
                await self.client.update(self._kind(node.api_version, node.kind), obj)
                return
            except errors.NotFound:
                return
            except errors.Conflict:
                if attempt == _EDIT_ATTEMPTS - 1:
                    raise


def _describe(node: Node) -> str:
    where = f"{node.namespace}/" if node.namespace else ""
    return f"{node.kind}:{where}{node.name}"


def _drop_owner_refs(md: Obj, uids: set[str]) -> bool:
    refs = md.get("ownerReferences") or []
    kept = [r for r in refs if r.get("uid") not in uids]
    if len(kept) == len(refs):
        return False
    if kept:
        md["ownerReferences"] = kept
    else:
        md.pop("ownerReferences", None)
    return True


def _unblock_owner_refs(md: Obj, uids: set[str]) -> bool:
    changed = False
    for ref in md.get("ownerReferences") or ():
        if ref.get("uid") in uids and ref.get("blockOwnerDeletion"):
            ref["blockOwnerDeletion"] = False
            changed = True
    return changed


def _drop_finalizer(md: Obj, finalizer: str) -> bool:
    finalizers = md.get("finalizers") or []
    if finalizer not in finalizers:
        return False
    kept = [f for f in finalizers if f != finalizer]
    if kept:
        md["finalizers"] = kept
    else:
        md.pop("finalizers", None)
    return True
