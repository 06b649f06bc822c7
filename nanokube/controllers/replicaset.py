"""The ReplicaSet controller: keep `spec.replicas` pods matching the selector running.

As upstream's `pkg/controller/replicaset/replica_set.go`, `reconcile(key)`:

1. reads the ReplicaSet from the cache (gone: forget its expectations, done);
2. claims its pods among the namespace's active pods: its own that still
   match, orphans that match (adopted), its own that no longer match
   (released) — see `ownership.claim`;
3. unless it still waits for pod events it expects, or is being deleted,
   creates or deletes the difference (`manage_replicas`): creates in batches
   of 1, 2, 4, ... (a failing batch stops the rest), at most 500 per round,
   from the template with `generateName: <rs>-` and a controller reference;
   deletes the pods ranked least valuable (`pods.pods_to_delete`);
4. writes `status` (replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas, observedGeneration, the ReplicaFailure condition)
   through `/status` when it changed, and re-checks once the next ready pod
   has been ready for `minReadySeconds`.

Expectations (`expectations.Expectations`) are recorded before any create or
delete and ticked off by pod events, so that a cache that lags the API never
causes double creates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import REPLICA_SET
from nanokube.api.resources.core import POD
from nanokube.client.cache import by_owner_uid
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import ownership, pods
from nanokube.controllers.base import PodOwnerController
from nanokube.controllers.status import (
    get_condition,
    new_condition,
    remove_condition,
    set_condition,
    write_status,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# upstream's BurstReplicas: the most pods created or deleted in one round.
BURST_REPLICAS = 500
# Pod updates that leave ownership alone (bindings, readiness) are gathered for
# this long into one sync: at 10,000 pods a sync per update would be most of a core.
STATUS_BATCH_SECONDS = 0.25
# upstream's SlowStartInitialBatchSize.
SLOW_START_INITIAL_BATCH = 1


async def slow_start_batch(
    count: int, initial: int, create: Callable[[], Awaitable[None]]
) -> tuple[int, Exception | None]:
    """Call `create` `count` times in batches that double while every call succeeds.

    Returns the number of successes and the first error: after a failing batch
    nothing more is tried, so a quota or a bad template costs one call, not 500.
    """
    successes, remaining = 0, count
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(create() for _ in range(batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(failures)
        if failures:
            first = failures[0]
            if not isinstance(first, Exception):
                raise first
            return successes, first
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


def pod_from_template(owner: Obj, owner_ref: Obj) -> Obj:
    """`controller.GetPodFromTemplate`: the template's labels, annotations, finalizers and spec."""
    template = (owner.get("spec") or {}).get("template") or {}
    tmd = template.get("metadata") or {}
    md: Obj = {
        "generateName": f"{owner['metadata']['name']}-",
        "namespace": owner["metadata"].get("namespace", ""),
        "ownerReferences": [owner_ref],
    }
    for field in ("labels", "annotations", "finalizers"):
        if tmd.get(field):
            md[field] = copy_json(tmd[field])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": copy_json(template.get("spec") or {}),
    }


def _terminating_namespace(e: Exception) -> bool:
    """Upstream ignores creates refused because the namespace is going away."""
    return isinstance(e, errors.Forbidden) and "being terminated" in e.message


class ReplicaSetController(PodOwnerController):
    name = "replicaset-controller"
    workers = 5  # upstream's --concurrent-replicaset-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The ReplicaSets to reconcile, and their sibling lookup by owning Deployment.
        self.replica_sets = self.watch(
            informers.informer(REPLICA_SET, indexers={ownership.OWNER_INDEX: by_owner_uid})
        )
        # Pods, indexed by owner so a ReplicaSet's pods are one lookup.
        self.pods = self.watch(
            informers.informer(POD, indexers={ownership.OWNER_INDEX: by_owner_uid})
        )
        self.burst_replicas = BURST_REPLICAS
        self.enqueue_events(self.replica_sets, self.expectations)
        # Pod events: upstream's full rules, a pod being deleted counting as gone.
        ownership.OwnedEvents(
            self.replica_sets,
            self.enqueue,
            expectations=self.expectations,
            adopters=lambda pod: ownership.selecting(self.replica_sets, pod),
            deleting_is_deleted=True,
            batch=lambda rs: self.enqueue_after(rs, STATUS_BATCH_SECONDS),
        ).register(self.pods)

    # -- reconcile -----------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.cached_owner(self.replica_sets, key)
        if rs is None:
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.owner_selector(rs, key)
        if selector is None:
            return
        active = [p for p in self.pods.list(meta.namespace(rs)) if pods.is_active(p)]
        check = ownership.owner_checker(self.client, REPLICA_SET, rs)
        owned = await ownership.claim(self.client, POD, active, rs, REPLICA_SET, selector, check)

        manage_error: Exception | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self.manage_replicas(owned, rs, key)
            except errors.StatusError as e:
                manage_error = e
        status = calculate_status(rs, owned, manage_error)
        rs = await write_status(self.client, REPLICA_SET, rs, status)
        if manage_error is not None:
            raise manage_error
        self.requeue_for_availability(key, rs, owned)

    async def manage_replicas(self, owned: list[Obj], rs: Obj, key: str) -> None:
        """Create or delete pods to reach `spec.replicas` (one bounded step)."""
        diff = len(owned) - (rs.get("spec") or {}).get("replicas", 1)
        if diff < 0:
            await self._create_pods(rs, key, min(-diff, self.burst_replicas))
        elif diff > 0:
            await self._delete_pods(rs, key, owned, min(diff, self.burst_replicas))

    async def _create_pods(self, rs: Obj, key: str, count: int) -> None:
        log.info("creating pods replicaset=%s count=%d", key, count)
        self.expectations.expect_creations(key, count)
        ref = ownership.new_controller_ref(rs, REPLICA_SET)

        async def create_one() -> None:
            try:
                pod = await self.client.create(POD, pod_from_template(rs, ref))
            except errors.StatusError as e:
                if _terminating_namespace(e):
                    return  # nothing to create in a namespace being deleted
                self.events.warning(rs, "FailedCreate", f"Error creating: {e.message}")
                raise
            self.events.normal(rs, "SuccessfulCreate", f"Created pod: {meta.name(pod)}")

        created, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create_one)
        skipped = count - created
        if skipped:
            # Creates not attempted or failed will never be observed: stop waiting for them.
            self.expectations.creation_observed(key, skipped)
        if error is not None:
            raise error

    async def _delete_pods(self, rs: Obj, key: str, owned: list[Obj], count: int) -> None:
        victims = pods.pods_to_delete(owned, self._related_pods(rs, owned), count)
        log.info("deleting pods replicaset=%s count=%d", key, len(victims))
        await self.delete_pods(rs, key, victims)

    def _related_pods(self, rs: Obj, owned: list[Obj]) -> list[Obj]:
        """The active pods of every ReplicaSet with the same controlling owner (a Deployment's).

        Used to rank pods by how crowded their node is across the whole rollout.
        """
        ref = ownership.controller_ref(rs)
        if ref is None:
            return owned
        related: list[Obj] = []
        for sibling in self.replica_sets.by_index(ownership.OWNER_INDEX, ref.get("uid", "")):
            if meta.namespace(sibling) != meta.namespace(rs):
                continue
            related += [
                p
                for p in self.pods.by_index(ownership.OWNER_INDEX, sibling["metadata"]["uid"])
                if pods.is_active(p)
            ]
        return related


def calculate_status(rs: Obj, owned: list[Obj], manage_error: Exception | None) -> Obj:
    """`calculateStatus`: counts over the claimed pods and the ReplicaFailure condition."""
    spec = rs.get("spec") or {}
    status = copy_json(rs.get("status") or {})
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    template_selector = selectors.label_selector_from_set(template_labels)
    min_ready = spec.get("minReadySeconds") or 0
    fully_labeled = sum(1 for p in owned if template_selector.matches_object(p))
    ready = sum(1 for p in owned if pods.is_ready(p))
    available = sum(1 for p in owned if pods.is_available(p, min_ready))

    conditions = list(status.get("conditions") or ())
    failure = get_condition(conditions, "ReplicaFailure")
    if manage_error is not None and failure is None:
        diff = len(owned) - spec.get("replicas", 1)
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        message = getattr(manage_error, "message", str(manage_error))
        set_condition(
            conditions, new_condition("ReplicaFailure", "True", reason, message, update_time=False)
        )
    elif manage_error is None and failure is not None:
        conditions = remove_condition(conditions, "ReplicaFailure")

    new: Obj = {"replicas": len(owned)}
    for field, value in (
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("observedGeneration", rs["metadata"].get("generation", 0)),
    ):
        if value:
            new[field] = value
    if conditions:
        new["conditions"] = conditions
    return new
