"""The StatefulSet controller: ordered, stably named pods with their own volume claims.

As upstream's `pkg/controller/statefulset` (`stateful_set.go`,
`stateful_set_control.go`), `reconcile(key)`:

1. reads the StatefulSet from the cache (gone: forget it, done);
2. claims its pods (members by name `<set>-<ordinal>` that match the selector,
   adopting orphans, releasing strays);
3. claims its ControllerRevisions likewise and syncs the revision history
   (`revisions.sync_history`): the *update* revision holds the current
   template, the *current* revision is the one named in
   `status.currentRevision`;
4. unless it waits for pod events it expects or is being deleted, makes one
   step (`update_replicas`):
   - a finished (Succeeded/Failed) pod is deleted, to be recreated;
   - a missing ordinal in `[start, start+replicas)` is created, after its
     PersistentVolumeClaims (`<template>-<set>-<ordinal>`), from the current
     revision below `partition` and the update revision otherwise;
     with `podManagementPolicy: OrderedReady` one pod at a time, each waiting
     until every lower ordinal is Running and Ready; with `Parallel` all at once;
   - pods with ordinals beyond the range are deleted from the highest ordinal,
     one at a time once all others are healthy (OrderedReady), or all at once;
     with `whenScaled: Delete` their claims are first given the pod as owner;
   - with `updateStrategy: RollingUpdate`, from the highest ordinal down to
     `partition`, the first pod not at the update revision is deleted (it comes
     back at the update revision), waiting for each to be healthy again
     (maxUnavailable 1); `OnDelete` leaves that to the user;
5. writes `status` (replicas, readyReplicas, currentReplicas, updatedReplicas,
   availableReplicas, current/update revision, collisionCount,
   observedGeneration); once every pod runs the update revision and is ready,
   the update revision becomes current; then old revisions beyond
   `revisionHistoryLimit` are deleted.

Events are upstream's: `SuccessfulCreate` "create Pod web-0 in StatefulSet web
successful", `SuccessfulDelete`, `FailedCreate` "... failed error: ...", and
for claims "create Claim data-web-0 Pod web-0 in StatefulSet web success".
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import CONTROLLER_REVISION, STATEFUL_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME_CLAIM
from nanokube.client.cache import key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import ownership, pods, revisions
from nanokube.controllers import statefulset_pods as sp
from nanokube.controllers.base import PodOwnerController
from nanokube.controllers.status import write_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class _Plan:
    """The set's pods sorted by role: `replicas[i]` is ordinal start+i (None when missing)."""

    replicas: list[Obj | None]
    condemned: list[Obj] = field(default_factory=list)  # beyond the range, highest first


class StatefulSetController(PodOwnerController):
    name = "statefulset-controller"
    workers = 5  # upstream's --concurrent-statefulset-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The StatefulSets to reconcile.
        self.sets = self.watch(informers.informer(STATEFUL_SET))
        # Their pods (found by namespace, then by name and selector).
        self.pods = self.watch(informers.informer(POD))
        # Their template history.
        self.revisions = self.watch(informers.informer(CONTROLLER_REVISION))
        # Existing claims, so a claim is created only when missing.
        self.claims = self.watch(informers.informer(PERSISTENT_VOLUME_CLAIM))
        self.enqueue_events(self.sets, self.expectations)
        ownership.OwnedEvents(
            self.sets, self.enqueue, expectations=self.expectations, adopters=self._adopters
        ).register(self.pods)

    def _adopters(self, pod: Obj) -> list[Obj]:
        """An orphan may be adopted by the StatefulSet its name says it belongs to."""
        parsed = sp.parent_and_ordinal(pod)
        sts = self.sets.get(parsed[0], meta.namespace(pod)) if parsed is not None else None
        return [sts] if sts is not None else []

    # -- reconcile -----------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        sts = self.cached_owner(self.sets, key)
        if sts is None:
            return
        namespace = meta.namespace(sts)
        selector = self.owner_selector(sts, key)
        if selector is None:
            return
        needs_sync = self.expectations.satisfied(key)
        check = ownership.owner_checker(self.client, STATEFUL_SET, sts)
        members = [p for p in self.pods.list(namespace) if sp.ordinal_of(sts, p) is not None]
        owned = await ownership.claim(self.client, POD, members, sts, STATEFUL_SET, selector, check)
        current_name = (sts.get("status") or {}).get("currentRevision")
        history = await revisions.sync_history(
            self.client,
            sts,
            STATEFUL_SET,
            self.revisions.list(namespace),
            selector,
            check,
            current_name,
        )
        step_error: Exception | None = None
        if needs_sync and not sts["metadata"].get("deletionTimestamp"):
            try:
                await self.update_replicas(sts, key, owned, history)
            except errors.StatusError as e:
                step_error = e
        status = calculate_status(sts, owned, history)
        await write_status(self.client, STATEFUL_SET, sts, status)
        in_use = {sp.revision_of(p) for p in owned}
        await revisions.truncate_history(self.client, sts, history, in_use)
        if step_error is not None:
            raise step_error
        self.requeue_for_availability(key, sts, owned)

    def plan(self, sts: Obj, owned: list[Obj]) -> _Plan:
        """Place each pod at its ordinal; pods beyond the range are condemned."""
        spec = sts.get("spec") or {}
        start, count = sp.start_ordinal(sts), int(spec.get("replicas", 1))
        plan = _Plan(replicas=[None] * count)
        for pod in owned:
            ordinal = sp.ordinal_of(sts, pod)
            assert ordinal is not None  # members were filtered by name
            if start <= ordinal < start + count:
                plan.replicas[ordinal - start] = pod
            else:
                plan.condemned.append(pod)
        plan.condemned.sort(key=lambda p: sp.ordinal_of(sts, p) or 0, reverse=True)
        return plan

    async def update_replicas(
        self, sts: Obj, key: str, owned: list[Obj], history: revisions.History
    ) -> None:
        """One step towards `spec.replicas` healthy pods at the update revision."""
        spec = sts.get("spec") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)
        plan = self.plan(sts, owned)
        start = sp.start_ordinal(sts)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)

        # Finished pods are deleted, to be recreated by a later step.
        finished = [p for p in plan.replicas if p is not None and sp.is_finished(p)]
        finished = [p for p in finished if not sp.is_terminating(p)]
        if finished:
            await self._delete_pods(sts, key, finished if not ordered else finished[:1])
            return

        # Create the missing ordinals; OrderedReady waits for each to be Running and Ready.
        if ordered:
            for i, pod in enumerate(plan.replicas):
                if pod is None:
                    await self._create_pods(sts, key, history, [start + i], rolling, partition)
                    return
                if sp.is_terminating(pod) or not sp.is_healthy(pod, min_ready):
                    log.debug("statefulset=%s waiting for pod=%s", key, meta.name(pod))
                    return
        else:
            missing = [start + i for i, p in enumerate(plan.replicas) if p is None]
            if missing:
                await self._create_pods(sts, key, history, missing, rolling, partition)
            if missing or plan.condemned:
                await self._scale_down(sts, key, plan, ordered, min_ready)
                return

        # Scale down from the highest ordinal.
        if plan.condemned:
            await self._scale_down(sts, key, plan, ordered, min_ready)
            return

        if rolling:
            await self._rolling_update(sts, key, plan, history, partition, start, min_ready)

    async def _scale_down(
        self, sts: Obj, key: str, plan: _Plan, ordered: bool, min_ready: int
    ) -> None:
        """Delete condemned pods: all at once (Parallel) or the highest once all are healthy."""
        condemned = [p for p in plan.condemned if not sp.is_terminating(p)]
        if not ordered:
            await self._delete_pods(sts, key, condemned)
            return
        if len(condemned) != len(plan.condemned):
            return  # one is already going away: wait for it
        # upstream's firstUnhealthyPod: lower ordinals first, then condemned highest first.
        everyone = [p for p in plan.replicas if p is not None] + plan.condemned
        unhealthy = [p for p in everyone if not sp.is_healthy(p, min_ready)]
        target = plan.condemned[0]
        if unhealthy and unhealthy[0] is not target:
            log.debug("statefulset=%s waiting for pod=%s", key, meta.name(unhealthy[0]))
            return
        await self._delete_pods(sts, key, [target])

    async def _rolling_update(
        self,
        sts: Obj,
        key: str,
        plan: _Plan,
        history: revisions.History,
        partition: int,
        start: int,
        min_ready: int,
    ) -> None:
        """From the highest ordinal down to `partition`, replace one outdated pod at a time."""
        update_name = meta.name(history.update)
        for i in range(len(plan.replicas) - 1, -1, -1):
            if start + i < partition:
                return
            pod = plan.replicas[i]
            if pod is None:
                return
            if sp.revision_of(pod) != update_name and not sp.is_terminating(pod):
                log.info(
                    "statefulset=%s rolling pod=%s to revision=%s", key, meta.name(pod), update_name
                )
                await self._delete_pods(sts, key, [pod])
                return
            if not sp.is_healthy(pod, min_ready):
                return

    # -- writes --------------------------------------------------------------

    async def _create_pods(
        self,
        sts: Obj,
        key: str,
        history: revisions.History,
        ordinals: list[int],
        rolling: bool,
        partition: int,
    ) -> None:
        ref = ownership.new_controller_ref(sts, STATEFUL_SET)
        self.expectations.expect_creations(key, len(ordinals))
        failure: Exception | None = None
        for ordinal in ordinals:
            # Below the partition a rolling update keeps the current revision.
            revision = history.current if rolling and ordinal < partition else history.update
            pod = sp.new_pod(sts, revision, ordinal, ref)
            try:
                await self._create_claims(sts, ordinal, pod)
                await self.client.create(POD, pod)
            except errors.StatusError as e:
                self.expectations.creation_observed(key)
                if isinstance(e, errors.AlreadyExists):
                    continue  # our cache lags: the pod is there
                self._pod_event(sts, "create", meta.name(pod), e)
                failure = failure or e
                continue
            self._pod_event(sts, "create", meta.name(pod), None)
        if failure is not None:
            raise failure

    async def _create_claims(self, sts: Obj, ordinal: int, pod: Obj) -> None:
        """Create the claims the pod mounts, unless they exist (`createPersistentVolumeClaims`)."""
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        for claim in sp.claims_for(sts, ordinal):
            cmd = claim["metadata"]
            if self.claims.get(cmd["name"], cmd["namespace"]) is not None:
                continue
            if policy.get("whenDeleted") == "Delete":
                # The claim goes with the StatefulSet (through the garbage collector).
                cmd["ownerReferences"] = [_owner_ref(sts, "apps/v1", "StatefulSet")]
            try:
                await self.client.create(PERSISTENT_VOLUME_CLAIM, claim)
            except errors.AlreadyExists:
                continue
            except errors.StatusError as e:
                self.events.warning(
                    sts,
                    "FailedCreate",
                    f"create Claim {cmd['name']} for Pod {meta.name(pod)} in StatefulSet "
                    f"{meta.name(sts)} failed error: {e.message}",
                )
                raise
            self.events.normal(
                sts,
                "SuccessfulCreate",
                f"create Claim {cmd['name']} Pod {meta.name(pod)} in StatefulSet "
                f"{meta.name(sts)} success",
            )

    async def _delete_pods(self, sts: Obj, key: str, victims: list[Obj]) -> None:
        self.expectations.expect_deletions(key, [key_of(p) for p in victims])
        failure: Exception | None = None
        for pod in victims:
            release = functools.partial(self._release_claims_to, sts, pod)
            try:
                if not await self.delete_pod(key, pod, release):
                    continue
            except errors.StatusError as e:
                self._pod_event(sts, "delete", meta.name(pod), e)
                failure = failure or e
                continue
            self._pod_event(sts, "delete", meta.name(pod), None)
        if failure is not None:
            raise failure

    async def _release_claims_to(self, sts: Obj, pod: Obj) -> None:
        """`whenScaled: Delete`: a pod removed by a scale-down takes its claims with it."""
        spec = sts.get("spec") or {}
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        ordinal = sp.ordinal_of(sts, pod)
        start = sp.start_ordinal(sts)
        if policy.get("whenScaled") != "Delete" or ordinal is None:
            return
        if start <= ordinal < start + int(spec.get("replicas", 1)):
            return  # not a scale-down: the pod comes back and keeps its claims
        for template in spec.get("volumeClaimTemplates") or ():
            claim = self.claims.get(sp.claim_name(template, sts, ordinal), meta.namespace(sts))
            if claim is None:
                continue
            refs = list(claim["metadata"].get("ownerReferences") or ())
            if any(r.get("uid") == pod["metadata"]["uid"] for r in refs):
                continue
            refs.append(_owner_ref(pod, "v1", "Pod"))
            patch = {
                "metadata": {
                    "ownerReferences": refs,
                    "resourceVersion": claim["metadata"]["resourceVersion"],
                }
            }
            await self.client.patch(
                PERSISTENT_VOLUME_CLAIM, meta.name(claim), patch, meta.namespace(claim)
            )

    def _pod_event(self, sts: Obj, verb: str, pod_name: str, error: Exception | None) -> None:
        """upstream's `recordPodEvent`: `create Pod web-0 in StatefulSet web successful`."""
        subject = f"{verb} Pod {pod_name} in StatefulSet {meta.name(sts)}"
        if error is None:
            self.events.normal(sts, f"Successful{verb.title()}", f"{subject} successful")
        else:
            message = getattr(error, "message", str(error))
            self.events.warning(sts, f"Failed{verb.title()}", f"{subject} failed error: {message}")


def _owner_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """A plain (non-controller) owner reference, as the claim retention policy sets."""
    md = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md["uid"]}


def calculate_status(sts: Obj, owned: list[Obj], history: revisions.History) -> Obj:
    """Counts over the set's pods (`computeReplicaStatus`), revisions and observedGeneration."""
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    current_name, update_name = meta.name(history.current), meta.name(history.update)
    status = copy_json(sts.get("status") or {})
    counts = {"replicas": 0, "ready": 0, "available": 0, "current": 0, "updated": 0}
    for pod in owned:
        if sp.is_created(pod):
            counts["replicas"] += 1
        if sp.is_running_and_ready(pod):
            counts["ready"] += 1
            if pods.is_available(pod, min_ready):
                counts["available"] += 1
        if sp.is_created(pod) and not sp.is_terminating(pod):
            revision = sp.revision_of(pod)
            counts["current"] += revision == current_name
            counts["updated"] += revision == update_name
    status.update(
        {
            "observedGeneration": sts["metadata"].get("generation", 0),
            "replicas": counts["replicas"],
            "readyReplicas": counts["ready"],
            "availableReplicas": counts["available"],
            "currentReplicas": counts["current"],
            "updatedReplicas": counts["updated"],
            "currentRevision": current_name,
            "updateRevision": update_name,
            "collisionCount": history.collision_count,
        }
    )
    rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    desired = int(spec.get("replicas", 1))
    if rolling and counts["updated"] == desired and counts["ready"] == desired:
        # upstream's completeRollingUpdate: the update revision has become current.
        status["currentRevision"] = update_name
        status["currentReplicas"] = counts["updated"]
    return status
