"""The DaemonSet controller: one pod on every eligible node.

As upstream's `pkg/controller/daemon` (`daemon_controller.go`, `update.go`),
`reconcile(key)`:

1. reads the DaemonSet (gone: forget it); claims its pods and its
   ControllerRevisions, and syncs the history: the revision of the current
   template gives the hash every up-to-date pod carries in
   `controller-revision-hash`;
2. maps pods to nodes (bound node, else the node their affinity pins them to);
3. unless it waits for pod events it expects or is being deleted (`manage`),
   for each node (`daemonset_nodes.eligibility`): a node that should run the
   daemon and has no pod gets one (template + default DaemonSet tolerations +
   node affinity `metadata.name In [node]`, the scheduler binds it); failed
   pods are deleted (`FailedDaemonPod`) and come back; extra pods on a node
   are deleted (the oldest stays); a node that may no longer keep the pod
   loses it;
4. with `updateStrategy: RollingUpdate`, replaces outdated pods: without surge
   it deletes outdated pods (unavailable ones at once, available ones while
   fewer than `maxUnavailable` nodes are unavailable), and the next step
   creates them anew; with `maxSurge` it first starts the new pod beside the
   old one and deletes the old one once the new one is available;
5. writes `status` (desiredNumberScheduled, currentNumberScheduled,
   numberMisscheduled, numberReady, numberAvailable, numberUnavailable,
   updatedNumberScheduled, observedGeneration, collisionCount) and trims the
   revision history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import CONTROLLER_REVISION, DAEMON_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import daemonset_nodes as dn
from nanokube.controllers import ownership, pods, revisions
from nanokube.controllers.base import PodOwnerController, run_all
from nanokube.controllers.deployment_util import scaled_value
from nanokube.controllers.replicaset import pod_from_template
from nanokube.controllers.status import write_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]

TEMPLATE_GENERATION_LABEL = "pod-template-generation"


@dataclass
class NodePlan:
    """What one sync decided for the nodes: pods to create (by node) and to delete."""

    create_on: list[str] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


class DaemonSetController(PodOwnerController):
    name = "daemonset-controller"
    workers = 2  # upstream's --concurrent-daemonset-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The DaemonSets to reconcile.
        self.daemon_sets = self.watch(informers.informer(DAEMON_SET))
        # Their pods.
        self.pods = self.watch(informers.informer(POD))
        # The nodes: a label or taint change can move a daemon.
        self.nodes = self.watch(informers.informer(NODE))
        # Their template history.
        self.revisions = self.watch(informers.informer(CONTROLLER_REVISION))
        self.enqueue_events(self.daemon_sets, self.expectations)
        # Pod events: a pod being deleted counts as gone (its node needs a new one).
        ownership.OwnedEvents(
            self.daemon_sets, self.enqueue, expectations=self.expectations, deleting_is_deleted=True
        ).register(self.pods)
        self.nodes.add_event_handler(self._node_changed, self._node_updated, self._node_changed)

    # -- event handlers ----------------------------------------------------------

    def _node_changed(self, node: Obj) -> None:
        for ds in self.daemon_sets.list():
            self.enqueue(ds)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if old.get("spec") != new.get("spec") or meta.labels(old) != meta.labels(new):
            self._node_changed(new)

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.cached_owner(self.daemon_sets, key)
        if ds is None:
            return
        namespace = meta.namespace(ds)
        selector = self.owner_selector(ds, key)
        if selector is None:
            return
        needs_sync = self.expectations.satisfied(key)
        check = ownership.owner_checker(self.client, DAEMON_SET, ds)
        candidates = [p for p in self.pods.list(namespace) if pods.is_active(p) or _failed(p)]
        owned = await ownership.claim(self.client, POD, candidates, ds, DAEMON_SET, selector, check)
        history = await revisions.sync_history(
            self.client, ds, DAEMON_SET, self.revisions.list(namespace), selector, check, None
        )
        hash_ = revisions.revision_hash(history.update)
        by_node: dict[str, list[Obj]] = {}
        for pod in owned:
            by_node.setdefault(dn.target_node(pod), []).append(pod)
        for node_pods in by_node.values():
            node_pods.sort(key=_created)

        step_error: Exception | None = None
        if needs_sync and not ds["metadata"].get("deletionTimestamp"):
            try:
                plan = self.manage(ds, by_node)
                if _rolling(ds) and not plan.create_on and not plan.delete:
                    plan = self.rolling_update(ds, by_node, hash_)
                await self._apply(ds, key, plan, hash_)
            except errors.StatusError as e:
                step_error = e
        status = self.calculate_status(ds, by_node, hash_, history.collision_count)
        await write_status(self.client, DAEMON_SET, ds, status)
        in_use = {
            meta.name(r)
            for r in history.revisions
            if revisions.revision_hash(r) in {revisions_label(p) for p in owned}
        }
        await revisions.truncate_history(self.client, ds, history, in_use)
        if step_error is not None:
            raise step_error
        self.requeue_for_availability(key, ds, owned)

    def _eligibility(self, ds: Obj) -> dict[str, tuple[bool, bool]]:
        """(should run, may continue running) per node name."""
        template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        return dn.eligibility(dn.with_default_tolerations(template_spec), self.nodes.list())

    def manage(self, ds: Obj, by_node: dict[str, list[Obj]]) -> NodePlan:
        """`manage` / `podsShouldBeOnNode`: what to create and delete, node by node."""
        plan = NodePlan()
        surge = _rolling(ds) and self._max_surge_unavailable(ds, 0)[0] > 0
        for node, (run, keep) in self._eligibility(ds).items():
            node_pods = by_node.get(node, [])
            if run and not node_pods:
                plan.create_on.append(node)
            elif keep:
                failed = [p for p in node_pods if _failed(p)]
                for pod in failed:
                    self.events.warning(
                        ds,
                        "FailedDaemonPod",
                        f"Found failed daemon pod {meta.namespace(pod)}/{meta.name(pod)} on node "
                        f"{node}, will try to kill it",
                    )
                plan.delete += failed
                running = [p for p in node_pods if not _failed(p)]
                if run and not running and not failed:
                    plan.create_on.append(node)
                if len(running) > 1 and not surge:
                    plan.delete += running[1:]  # the oldest stays
            else:
                plan.delete += node_pods
        return plan

    def _max_surge_unavailable(self, ds: Obj, desired: int) -> tuple[int, int]:
        rolling = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
        surge = scaled_value(rolling.get("maxSurge", 0), desired, True)
        unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def rolling_update(self, ds: Obj, by_node: dict[str, list[Obj]], hash_: str) -> NodePlan:
        """`rollingUpdate`: replace outdated pods within maxUnavailable / maxSurge."""
        eligible = {n for n, (run, _) in self._eligibility(ds).items() if run}
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        max_surge, max_unavailable = self._max_surge_unavailable(ds, len(eligible))
        plan = NodePlan()
        unavailable = surged = 0
        replace_now: list[Obj] = []
        candidates: list[Obj] = []
        new_nodes_now: list[str] = []
        new_node_candidates: list[str] = []
        for node in sorted(by_node):
            if node not in eligible:
                continue
            node_pods = by_node[node]
            new = [p for p in node_pods if revisions_label(p) == hash_]
            old = [p for p in node_pods if revisions_label(p) != hash_]
            if max_surge == 0:
                if len(node_pods) != 1:
                    unavailable += 1
                elif new:
                    unavailable += not pods.is_available(new[0], min_ready)
                elif not pods.is_available(old[0], min_ready):
                    replace_now.append(old[0])
                else:
                    candidates.append(old[0])
                continue
            if old and new:
                surged += 1
                if pods.is_available(new[0], min_ready):
                    plan.delete += old
            elif old:
                if not pods.is_available(old[0], min_ready):
                    new_nodes_now.append(node)
                else:
                    new_node_candidates.append(node)
        if max_surge == 0:
            room = min(max(max_unavailable - unavailable, 0), len(candidates))
            plan.delete = replace_now + candidates[:room]
        else:
            room = max(max_surge - surged, 0)
            plan.create_on = new_nodes_now + new_node_candidates[:room]
        return plan

    async def _apply(self, ds: Obj, key: str, plan: NodePlan, hash_: str) -> None:
        """`syncNodes`: deletes first; creates in a step with nothing to delete.

        One kind of write per step keeps one expectation record per DaemonSet
        (`Expectations` records creations or deletions, not both).
        """
        if plan.delete:
            await self.delete_pods(ds, key, plan.delete)
            return
        if not plan.create_on:
            return
        ref = ownership.new_controller_ref(ds, DAEMON_SET)

        async def create(node: str) -> None:
            try:
                pod = await self.client.create(POD, self.new_pod(ds, ref, node, hash_))
            except errors.StatusError as e:
                self.expectations.creation_observed(key)
                self.events.warning(ds, "FailedCreate", f"Error creating: {e.message}")
                raise
            self.events.normal(ds, "SuccessfulCreate", f"Created pod: {meta.name(pod)}")

        self.expectations.expect_creations(key, len(plan.create_on))
        await run_all(create(n) for n in plan.create_on)

    def new_pod(self, ds: Obj, owner_ref: Obj, node: str, hash_: str) -> Obj:
        """A daemon pod for `node`: the template, revision labels, tolerations and affinity."""
        pod = pod_from_template(ds, owner_ref)
        md = pod["metadata"]
        md["labels"] = {
            **(md.get("labels") or {}),
            TEMPLATE_GENERATION_LABEL: str(ds["metadata"].get("generation", 1)),
            revisions.POD_REVISION_LABEL: hash_,
        }
        spec = dn.with_default_tolerations(pod["spec"])
        dn.pin_to_node(spec, node)
        pod["spec"] = spec
        return pod

    def calculate_status(
        self, ds: Obj, by_node: dict[str, list[Obj]], hash_: str, collision_count: int
    ) -> Obj:
        """`updateDaemonSetStatus`: counts over nodes and the first pod on each."""
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = current = misscheduled = ready = available = updated = 0
        for node, (run, _) in self._eligibility(ds).items():
            node_pods = [p for p in by_node.get(node, []) if not _failed(p)]
            if run:
                desired += 1
                if node_pods:
                    current += 1
                    first = node_pods[0]
                    if pods.is_ready(first):
                        ready += 1
                        available += pods.is_available(first, min_ready)
                    updated += any(revisions_label(p) == hash_ for p in node_pods)
            elif node_pods:
                misscheduled += 1
        status = copy_json(ds.get("status") or {})
        status.update(
            {
                "desiredNumberScheduled": desired,
                "currentNumberScheduled": current,
                "numberMisscheduled": misscheduled,
                "numberReady": ready,
                "numberAvailable": available,
                "numberUnavailable": desired - available,
                "updatedNumberScheduled": updated,
                "observedGeneration": ds["metadata"].get("generation", 0),
                "collisionCount": collision_count,
            }
        )
        for zero_omitted in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not status[zero_omitted]:
                del status[zero_omitted]
        return status


def revisions_label(pod: Obj) -> str:
    return meta.labels(pod).get(revisions.POD_REVISION_LABEL, "")


def _failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed" and not (
        pod.get("metadata") or {}
    ).get("deletionTimestamp")


def _rolling(ds: Obj) -> bool:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    return strategy.get("type", "RollingUpdate") == "RollingUpdate"


def _created(pod: Obj) -> tuple[str, str]:
    return ((pod.get("metadata") or {}).get("creationTimestamp", ""), meta.name(pod))
