"""The namespace controller: empty a namespace being deleted, then let it go.

As upstream's `pkg/controller/namespace` (`deletion/namespaced_resources_deleter.go`),
`reconcile(name)` for a namespace with a `deletionTimestamp`:

1. reads it live (gone: done) and makes sure its phase is Terminating;
2. if the `kubernetes` finalizer is no longer in `spec.finalizers`, there is
   nothing left for this controller to do;
3. deletes every object of every namespaced kind in it (Background
   propagation: the garbage collector takes care of dependents elsewhere),
   then lists again to see what remains: pods still stopping on their nodes,
   objects held by finalizers;
4. records the outcome in the namespace's conditions, with upstream's types,
   reasons and messages (NamespaceDeletionDiscoveryFailure,
   NamespaceDeletionContentFailure, NamespaceContentRemaining,
   NamespaceFinalizersRemaining; each False with its "ok" reason once fine);
5. when nothing remains, removes `kubernetes` from `spec.finalizers` through
   `PUT /api/v1/namespaces/NAME/finalize`; the server then deletes the
   namespace. Otherwise it looks again when content goes (it follows the
   deletes of every kind it empties) or after upstream's estimate.

The server already refuses new objects in a terminating namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.core import NAMESPACE
from nanokube.client import kinds as kind_index
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller
from nanokube.controllers.status import get_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FINALIZER = "kubernetes"
# upstream's finalizerEstimateSeconds: how long to wait for content held by finalizers.
FINALIZER_ESTIMATE = 15

# Condition type → (reason, message) when all is well, in upstream's order.
_OK = {
    "NamespaceDeletionDiscoveryFailure": (
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    "NamespaceDeletionGroupVersionParsingFailure": (
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    "NamespaceDeletionContentFailure": (
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": (
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
}


def emptied_kinds(index: kind_index.KindIndex | None = None) -> list[Kind]:
    """Every namespaced kind that can be listed and deleted."""
    return [
        k
        for k in index or kind_index.builtin()
        if k.namespaced and "list" in k.verbs and "delete" in k.verbs
    ]


@dataclass
class Remaining:
    """What a pass of deletion left behind, and how long it may take to go."""

    by_resource: dict[str, int] = field(default_factory=dict)  # "pods." -> count
    by_finalizer: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    estimate: int = 0

    @property
    def empty(self) -> bool:
        return not self.by_resource and not self.failures


class NamespaceController(Controller):
    name = "namespace-controller"
    workers = 2  # upstream's --concurrent-namespace-syncs is 10; deletes here are cheap

    def __init__(
        self, client: Client, informers: SharedInformerFactory, kinds: Iterable[Kind] | None = None
    ) -> None:
        super().__init__(client, informers)
        # The kinds a namespace is emptied of (upstream discovers them).
        self.kinds = list(kinds) if kinds is not None else emptied_kinds()
        self.namespaces = self.watch(informers.informer(NAMESPACE))
        self.enqueue_events(self.namespaces)
        # Content going away may be the last thing a terminating namespace waits for.
        for kind in self.kinds:
            informers.informer(kind).add_event_handler(on_delete=self._content_deleted)

    def _content_deleted(self, obj: Obj) -> None:
        ns = self.namespaces.get(meta.namespace(obj))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.queue.add(meta.name(ns))

    async def reconcile(self, key: str) -> None:
        cached = self.namespaces.get(key)
        if cached is None or not cached["metadata"].get("deletionTimestamp"):
            return
        try:
            ns = await self.client.get(NAMESPACE, key)
        except errors.NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if (ns.get("status") or {}).get("phase") != "Terminating":
            ns = await self._write_status(ns, {**(ns.get("status") or {}), "phase": "Terminating"})
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return
        remaining = await self.delete_all_content(key)
        ns = await self._update_conditions(ns, remaining)
        if remaining.failures:
            raise errors.StatusError(
                f"failed to delete all content of namespace {key}: {'; '.join(remaining.failures)}"
            )
        if not remaining.empty:
            log.info(
                "namespace content remaining namespace=%s resources=%s", key, remaining.by_resource
            )
            self.queue.add_after(key, remaining.estimate / 2 + 1)
            return
        await self._finalize(ns)

    async def delete_all_content(self, namespace: str) -> Remaining:
        """Delete every object in the namespace (one pass) and count what is left."""
        remaining = Remaining()
        for kind in self.kinds:
            try:
                left = await self._delete_kind(kind, namespace)
            except errors.StatusError as e:
                remaining.failures.append(f"{kind.qualified_plural}: {e.message}")
                continue
            if not left:
                continue
            remaining.by_resource[f"{kind.plural}.{kind.group}"] = len(left)
            held = False
            for obj in left:
                for finalizer in obj["metadata"].get("finalizers") or ():
                    remaining.by_finalizer[finalizer] = remaining.by_finalizer.get(finalizer, 0) + 1
                    held = True
            estimate = _grace_estimate(left) if kind.graceful_deletion else 0
            if held:
                estimate = max(estimate, FINALIZER_ESTIMATE)
            remaining.estimate = max(remaining.estimate, estimate)
        return remaining

    async def _delete_kind(self, kind: Kind, namespace: str) -> list[Obj]:
        """Delete each object of `kind` not already being deleted; return what is still there."""
        items = (await self.client.list(kind, namespace))["items"]
        for obj in items:
            if obj["metadata"].get("deletionTimestamp"):
                continue
            try:
                await self.client.delete(
                    kind, meta.name(obj), namespace, propagation_policy="Background"
                )
            except errors.NotFound:
                continue
        if not items:
            return []
        return list((await self.client.list(kind, namespace))["items"])

    async def _update_conditions(self, ns: Obj, remaining: Remaining) -> Obj:
        """Upstream's namespaceConditionUpdater: failures as True, the rest as their ok variant."""
        failing: dict[str, tuple[str, str]] = {}
        if remaining.failures:
            failing["NamespaceDeletionContentFailure"] = (
                "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(remaining.failures)} remaining: "
                + ", ".join(remaining.failures),
            )
        if remaining.by_resource:
            parts = sorted(
                f"{r} has {n} resource instances" for r, n in remaining.by_resource.items()
            )
            failing["NamespaceContentRemaining"] = (
                "SomeResourcesRemain",
                f"Some resources are remaining: {', '.join(parts)}",
            )
        if remaining.by_finalizer:
            parts = sorted(
                f"{f} in {n} resource instances" for f, n in remaining.by_finalizer.items()
            )
            failing["NamespaceFinalizersRemaining"] = (
                "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {', '.join(parts)}",
            )
        status = copy_json(ns.get("status") or {})
        conditions: list[Obj] = status.get("conditions") or []
        changed = False
        for type_, ok in _OK.items():
            status_value, (reason, message) = (
                ("True", failing[type_]) if type_ in failing else ("False", ok)
            )
            old = get_condition(conditions, type_)
            if old is None and status_value == "False":
                continue  # only failures introduce a condition
            if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (
                status_value,
                reason,
                message,
            ):
                continue
            new = {
                "type": type_,
                "status": status_value,
                "lastTransitionTime": meta.now_rfc3339(),
                "reason": reason,
                "message": message,
            }
            conditions = [new if c is old else c for c in conditions] if old else [*conditions, new]
            changed = True
        if not changed:
            return ns
        status["conditions"] = conditions
        return await self._write_status(ns, status)

    async def _write_status(self, ns: Obj, status: Obj) -> Obj:
        body = copy_json(ns)
        body["status"] = status
        try:
            return await self.client.update(NAMESPACE, body, subresource="status")
        except errors.Conflict:
            return await self.client.get(NAMESPACE, meta.name(ns))

    async def _finalize(self, ns: Obj) -> None:
        """Remove our finalizer through `/finalize`: the server deletes the namespace after."""
        body = copy_json(ns)
        finalizers = [f for f in body["spec"].get("finalizers") or () if f != FINALIZER]
        body["spec"]["finalizers"] = finalizers
        log.info("finalizing namespace=%s", meta.name(ns))
        try:
            await self.client.update(NAMESPACE, body, subresource="finalize")
        except errors.NotFound:
            return


def _grace_estimate(pods: list[Obj]) -> int:
    """upstream's estimateGracefulTermination: the longest grace period still running."""
    longest = 0
    for pod in pods:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        longest = max(longest, int(grace or 0))
    return longest
