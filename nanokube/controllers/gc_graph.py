"""The garbage collector's graph of owner references (upstream's `graph_builder.go`).

Every object the collector's informers see is a node keyed by uid, with its
owner references and the uids of its dependents. An owner referenced by some
object but not (yet) seen is a *virtual* node: the collector checks with the
API whether it exists, and if not, the graph forgets it and its dependents
become garbage.

`observe(obj)` and `forget(uid)` update the graph from informer events and
return the `Work` they make necessary, which the collector queues:

- a node deleted: its dependents may have lost their last owner (to check);
  an owner waiting in foreground deletion may have lost its last blocker;
- an owner reference removed or its `blockOwnerDeletion` cleared: an owner
  waiting for that dependent may now finish;
- an object being deleted with the `orphan` finalizer: its dependents are to
  be orphaned;
- an object being deleted with `foregroundDeletion`: it is marked as deleting
  its dependents, and each dependent is to be deleted first.

No I/O here; the graph is touched only from the event loop's thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@dataclass
class Node:
    uid: str
    api_version: str
    kind: str
    name: str
    # For a virtual node, the namespace of the dependent that named it (its owner
    # lives there unless the owner's kind is cluster-scoped).
    namespace: str
    owners: list[Obj] = field(default_factory=list)
    dependents: set[str] = field(default_factory=set)
    # False while the node is known only from another object's owner reference.
    observed: bool = True
    being_deleted: bool = False
    # Being deleted in the foreground: waits for its blocking dependents to go.
    deleting_dependents: bool = False

    def owner_ref(self, owner_uid: str) -> Obj | None:
        return next((r for r in self.owners if r.get("uid") == owner_uid), None)

    def blocks(self, owner_uid: str) -> bool:
        """Whether this dependent holds up its owner's foreground deletion."""
        ref = self.owner_ref(owner_uid)
        return bool(ref and ref.get("blockOwnerDeletion"))


@dataclass
class Work:
    """What a graph change asks of the collector: uids to check for deletion, or to orphan."""

    delete: set[str] = field(default_factory=set)
    orphan: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.delete or self.orphan)


def _identity(obj: Obj) -> tuple[str, str, str, str, str]:
    md = obj.get("metadata") or {}
    return (
        md.get("uid", ""),
        obj.get("apiVersion", ""),
        obj.get("kind", ""),
        md.get("name", ""),
        md.get("namespace", "") or "",
    )


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def __contains__(self, uid: str) -> bool:
        return uid in self.nodes

    def get(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def dependents(self, node: Node) -> list[Node]:
        return [d for uid in node.dependents if (d := self.nodes.get(uid)) is not None]

    def blocking_dependents(self, node: Node) -> list[Node]:
        return [d for d in self.dependents(node) if d.blocks(node.uid)]

    def observe(self, obj: Obj) -> Work:
        """An object was added or updated."""
        uid, api_version, kind, name, namespace = _identity(obj)
        md = obj.get("metadata") or {}
        refs = [dict(r) for r in md.get("ownerReferences") or () if r.get("uid")]
        work = Work()
        node = self.nodes.get(uid)
        if node is None:
            node = Node(uid, api_version, kind, name, namespace, owners=refs)
            self.nodes[uid] = node
            self._link(node, refs, work)
        else:
            if not node.observed:
                node.observed = True
                node.api_version, node.kind, node.name = api_version, kind, name
                node.namespace = namespace
            self._relink(node, refs, work)
        finalizers = md.get("finalizers") or ()
        node.being_deleted = bool(md.get("deletionTimestamp"))
        if node.being_deleted and ORPHAN in finalizers:
            work.orphan.add(uid)
        elif node.being_deleted and FOREGROUND in finalizers:
            node.deleting_dependents = True
            work.delete |= node.dependents
            work.delete.add(uid)
        return work

    def forget(self, uid: str) -> Work:
        """An object was deleted (or a virtual owner turned out not to exist)."""
        work = Work()
        node = self.nodes.pop(uid, None)
        if node is None:
            return work
        for ref in node.owners:
            owner = self.nodes.get(ref["uid"])
            if owner is None:
                continue
            owner.dependents.discard(uid)
            if owner.deleting_dependents:
                work.delete.add(owner.uid)
            self._drop_if_unused(owner)
        # The dependents still name this uid: each must be checked for a remaining owner.
        work.delete |= node.dependents
        return work

    def _link(self, node: Node, refs: list[Obj], work: Work) -> None:
        """Record `node` as a dependent of each owner in `refs` (virtual owners as needed)."""
        for ref in refs:
            owner = self.nodes.get(ref["uid"])
            if owner is None:
                owner = Node(
                    ref["uid"],
                    ref.get("apiVersion", ""),
                    ref.get("kind", ""),
                    ref.get("name", ""),
                    node.namespace,
                    observed=False,
                )
                self.nodes[owner.uid] = owner
                work.delete.add(owner.uid)  # does it exist? the collector asks the API
            owner.dependents.add(node.uid)

    def _relink(self, node: Node, refs: list[Obj], work: Work) -> None:
        before = {r["uid"]: r for r in node.owners}
        after = {r["uid"]: r for r in refs}
        if before == after:
            return
        for owner_uid, ref in before.items():
            unblocked = ref.get("blockOwnerDeletion") and not (after.get(owner_uid) or {}).get(
                "blockOwnerDeletion"
            )
            owner = self.nodes.get(owner_uid)
            if owner is not None and unblocked and owner.deleting_dependents:
                work.delete.add(owner_uid)
            if owner_uid not in after and owner is not None:
                owner.dependents.discard(node.uid)
                self._drop_if_unused(owner)
        node.owners = refs
        self._link(node, [r for uid, r in after.items() if uid not in before], work)

    def _drop_if_unused(self, node: Node) -> None:
        """A virtual node nobody references any more is of no interest."""
        if not node.observed and not node.dependents:
            self.nodes.pop(node.uid, None)
