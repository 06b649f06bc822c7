"""The disruption controller: the status of every PodDisruptionBudget.

As upstream's `pkg/controller/disruption/disruption.go`, `reconcile(key)`:

1. reads the budget from the cache (gone: done);
2. finds its pods: the namespace's pods matching `spec.selector` (a missing
   selector matches none, an empty one all); none is a `NoPods` event;
3. works out how many pods are expected and how many must stay healthy:
   - `maxUnavailable` (int or percent): expected is the sum of the scales of
     the pods' controllers; desired healthy = expected - maxUnavailable
     (percent rounded up), never below 0;
   - `minAvailable` as an int: desired healthy is that number, expected is
     the number of pods;
   - `minAvailable` as a percent: expected is the controllers' scale,
     desired healthy its percentage rounded up.
   The scale of a pod's controller is its ReplicaSet's `spec.replicas` (or,
   for a ReplicaSet a Deployment controls, the Deployment's), its
   StatefulSet's or ReplicationController's. A pod without a controller
   (percent or maxUnavailable budgets) is an `UnmanagedPods` warning; a
   controller that cannot be found fails the sync;
4. keeps the entries of `status.disruptedPods` (written by the eviction
   subresource) for pods not yet being deleted and evicted less than two
   minutes ago, and re-checks when the oldest of them expires; a pod still
   there after that gets a `NotDeleted` event;
5. counts the healthy pods: ready, not being deleted, not in disruptedPods;
6. writes `currentHealthy`, `desiredHealthy`, `expectedPods`,
   `disruptionsAllowed` (healthy - desired, 0 when negative or when no pods
   are expected), `disruptedPods`, `observedGeneration` and the
   `DisruptionAllowed` condition (True/SufficientPods when disruptions are
   allowed, else False/InsufficientPods) through `/status`, only when
   something changed.

A sync that fails for any reason but a conflict writes the fail-safe status
instead: no disruptions allowed, condition False with reason SyncFailed.

A second queue, of pods, handles pods an eviction marked with the
`DisruptionTarget` condition but that were not deleted: two minutes after
the condition was set, it is turned False again (upstream's stale pod
disruption worker), so the pod no longer looks like it is going away.

Not done: the generic `scale` lookup of custom controllers.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import DEPLOYMENT, REPLICA_SET, STATEFUL_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_workloads import REPLICATION_CONTROLLER
from nanokube.api.resources.groups import POD_DISRUPTION_BUDGET
from nanokube.client.cache import key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.client.workqueue import WorkQueue
from nanokube.controllers import ownership, pods
from nanokube.controllers.base import Controller
from nanokube.controllers.status import get_condition, new_condition, set_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# upstream's DeletionTimeout: how long an evicted pod is expected to take to show as deleted.
DELETION_TIMEOUT = 2 * 60.0
# upstream's stalePodDisruptionTimeout: how long a DisruptionTarget condition may stand alone.
STALE_POD_DISRUPTION_TIMEOUT = 2 * 60.0
DISRUPTION_TARGET = "DisruptionTarget"
CONDITION = "DisruptionAllowed"


def scaled_value(value: Any, total: int) -> int:
    """`intstr.GetScaledValueFromIntOrPercent` rounding up, as the controller uses it."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _selector(pdb: Obj) -> selectors.LabelSelector:
    return selectors.label_selector_from_object((pdb.get("spec") or {}).get("selector"))


class DisruptionController(Controller):
    name = "disruption-controller"
    workers = 1

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The budgets: the keys of this controller.
        self.budgets = self.watch(informers.informer(POD_DISRUPTION_BUDGET))
        # The pods the budgets select; their changes re-sync the budgets that cover them.
        self.pods = self.watch(informers.informer(POD))
        # The controllers whose scale is the denominator of percent budgets (read only).
        self.replica_sets = self.watch(informers.informer(REPLICA_SET))
        self.deployments = self.watch(informers.informer(DEPLOYMENT))
        self.stateful_sets = self.watch(informers.informer(STATEFUL_SET))
        self.replication_controllers = self.watch(informers.informer(REPLICATION_CONTROLLER))
        # The clock, replaceable by a test.
        self.now = time.time
        # Pods marked DisruptionTarget and not deleted, checked once the mark is stale.
        self.stale_queue: WorkQueue[str] = WorkQueue(f"{self.name}-stale-pods")
        self.enqueue_events(self.budgets)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_changed)

    def work_queues(self) -> list[tuple[WorkQueue[str], Any]]:
        return [(self.queue, None), (self.stale_queue, self.sync_stale_pod)]

    # -- event handlers: they only enqueue ----------------------------------------

    def _pod_changed(self, pod: Obj) -> None:
        for pdb in self._budgets_for(pod):
            self.enqueue(pdb)
        since = _disruption_target_since(pod)
        if since is not None and not pod["metadata"].get("deletionTimestamp"):
            wait = since + STALE_POD_DISRUPTION_TIMEOUT - self.now()
            self.stale_queue.add_after(key_of(pod), max(wait, 0.0))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta.labels(old) != meta.labels(new):
            self._pod_changed(old)
        self._pod_changed(new)

    def _budgets_for(self, pod: Obj) -> list[Obj]:
        found = []
        for pdb in self.budgets.list(meta.namespace(pod)):
            try:
                if _selector(pdb).matches_object(pod):
                    found.append(pdb)
            except errors.StatusError:
                continue
        return found

    # -- stale disruption marks ---------------------------------------------------

    async def sync_stale_pod(self, key: str) -> None:
        """Turn a DisruptionTarget condition that outlived its eviction False."""
        ns, _, name = key.partition("/")
        pod = self.pods.get(name, ns)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        since = _disruption_target_since(pod)
        if since is None:
            return
        wait = since + STALE_POD_DISRUPTION_TIMEOUT - self.now()
        if wait > 0:
            self.stale_queue.add_after(key, wait)
            return
        body = copy_json(pod)
        for cond in body["status"]["conditions"]:
            if cond.get("type") == DISRUPTION_TARGET:
                cond.update({"status": "False", "lastTransitionTime": meta.now_rfc3339()})
                cond.pop("reason", None)
                cond.pop("message", None)
        await self.client.update(POD, body, subresource="status")
        log.info("cleared stale disruption target pod=%s", key)

    # -- reconcile -------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        pdb = self.budgets.get(name, ns)
        if pdb is None:
            return
        try:
            await self._sync(pdb)
        except errors.Conflict:
            raise
        except Exception as e:  # noqa: BLE001 - any failure: allow no disruption (upstream)
            log.warning("pdb sync failed pdb=%s error=%r", key, e)
            await self._fail_safe(pdb, str(e))

    async def _sync(self, pdb: Obj) -> None:
        selected = [
            p for p in self.pods.list(meta.namespace(pdb)) if _selector(pdb).matches_object(p)
        ]
        if not selected:
            self.events.normal(pdb, "NoPods", "No matching pods found")
        expected, desired, unmanaged = self.expected_pod_count(pdb, selected)
        if unmanaged:
            self.events.warning(
                pdb,
                "UnmanagedPods",
                "Pods selected by this PodDisruptionBudget (selector: "
                f"{(pdb.get('spec') or {}).get('selector')}) were found to be unmanaged. As a "
                "result, the status of the PDB cannot be calculated correctly, which may result "
                'in undefined behavior. To account for these pods please set ".spec.minAvailable" '
                "field of the PDB to an integer value.",
            )
        now = self.now()
        disrupted, recheck = self._disrupted_pods(pdb, selected, now)
        healthy = sum(
            1
            for p in selected
            if not p["metadata"].get("deletionTimestamp")
            and meta.name(p) not in disrupted
            and pods.is_ready(p)
        )
        await self._write(pdb, healthy, desired, expected, disrupted)
        if recheck is not None:
            self.enqueue_after(pdb, max(recheck - now, 0.0))

    def expected_pod_count(self, pdb: Obj, selected: list[Obj]) -> tuple[int, int, list[str]]:
        """(expectedPods, desiredHealthy, names of pods without a controller)."""
        spec = pdb.get("spec") or {}
        if spec.get("maxUnavailable") is not None:
            expected, unmanaged = self._expected_scale(selected)
            desired = max(expected - scaled_value(spec["maxUnavailable"], expected), 0)
            return expected, desired, unmanaged
        low = spec.get("minAvailable")
        if isinstance(low, int):
            return len(selected), low, []
        if isinstance(low, str):
            expected, unmanaged = self._expected_scale(selected)
            return expected, scaled_value(low, expected), unmanaged
        return 0, 0, []

    def _expected_scale(self, selected: list[Obj]) -> tuple[int, list[str]]:
        """The sum of the scales of the pods' controllers, each counted once."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in selected:
            ref = ownership.controller_ref(pod)
            if ref is None:
                unmanaged.append(meta.name(pod))
                continue
            if ref.get("uid") in scales:
                continue
            found = self._controller_scale(pod)
            if found is None:
                raise errors.NotFound(f'found no controllers for pod "{meta.name(pod)}"')
            uid, scale = found
            scales[uid] = scale
        return sum(scales.values()), unmanaged

    def _controller_scale(self, pod: Obj) -> tuple[str, int] | None:
        """(uid, spec.replicas) of the workload controlling `pod` (a Deployment through
        its ReplicaSet), or None when it is not in the caches."""
        rs = ownership.resolve(self.replica_sets, pod)
        if rs is not None:
            rs_ref = ownership.controller_ref(rs)
            if rs_ref is not None and rs_ref.get("kind") == "Deployment":
                deployment = ownership.resolve(self.deployments, rs)
                return None if deployment is None else _scale(deployment)
            return _scale(rs)
        for owners in (self.stateful_sets, self.replication_controllers):
            owner = ownership.resolve(owners, pod)
            if owner is not None:
                return _scale(owner)
        return None

    def _disrupted_pods(
        self, pdb: Obj, selected: list[Obj], now: float
    ) -> tuple[Obj, float | None]:
        """The still-pending evictions of `status.disruptedPods`, and when the first expires."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        kept: Obj = {}
        recheck: float | None = None
        for pod in selected:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            stamp = recorded.get(meta.name(pod))
            if stamp is None:
                continue
            expires = meta.parse_time(stamp) + DELETION_TIMEOUT
            if expires < now:
                self.events.warning(
                    pod,
                    "NotDeleted",
                    f"Pod was expected by PDB {meta.namespace(pdb)}/{meta.name(pdb)} "
                    "to be deleted but it wasn't",
                )
                continue
            kept[meta.name(pod)] = stamp
            recheck = expires if recheck is None else min(recheck, expires)
        return kept, recheck

    async def _write(
        self, pdb: Obj, healthy: int, desired: int, expected: int, disrupted: Obj
    ) -> None:
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0  # budgets that match no pods yet stay safe when the first appear
        current = pdb.get("status") or {}
        generation = pdb["metadata"].get("generation") or 0
        status: Obj = {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "observedGeneration": generation,
            "conditions": [dict(c) for c in current.get("conditions") or ()],
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        if allowed > 0:
            _set_allowed_condition(status, "True", "SufficientPods", "")
        else:
            _set_allowed_condition(status, "False", "InsufficientPods", "")
        await self._update_status(pdb, status)

    async def _update_status(self, pdb: Obj, status: Obj) -> None:
        """One write from the cached budget: a conflict (an eviction wrote meanwhile) is
        retried by recomputing from a fresh cache, never by overwriting what it recorded."""
        if (pdb.get("status") or {}) == status:
            return
        body = copy_json(pdb)
        body["status"] = status
        await self.client.update(POD_DISRUPTION_BUDGET, body, subresource="status")

    async def _fail_safe(self, pdb: Obj, message: str) -> None:
        status = {**(pdb.get("status") or {}), "disruptionsAllowed": 0}
        status["conditions"] = [dict(c) for c in status.get("conditions") or ()]
        _set_allowed_condition(status, "False", "SyncFailed", message)
        await self._update_status(pdb, status)
        log.info("pdb fail-safe written pdb=%s", key_of(pdb))


def _disruption_target_since(pod: Obj) -> float | None:
    """When the pod's DisruptionTarget condition turned True, or None if it is not True."""
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == DISRUPTION_TARGET and cond.get("status") == "True":
            stamp = cond.get("lastTransitionTime")
            return meta.parse_time(stamp) if stamp else 0.0
    return None


def _scale(obj: Obj) -> tuple[str, int]:
    replicas = (obj.get("spec") or {}).get("replicas")
    return obj["metadata"]["uid"], 1 if replicas is None else int(replicas)


def _set_allowed_condition(status: Obj, value: str, reason: str, message: str) -> None:
    """`meta.SetStatusCondition` of DisruptionAllowed: a new time only when the status flips."""
    conditions: list[Obj] = status["conditions"]
    set_condition(conditions, new_condition(CONDITION, value, reason, message, update_time=False))
    cond = get_condition(conditions, CONDITION)
    assert cond is not None
    cond["message"] = message
    cond["observedGeneration"] = status.get("observedGeneration") or 0
