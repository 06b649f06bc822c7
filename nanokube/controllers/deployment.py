"""The Deployment controller: roll a Deployment's pods out through ReplicaSets.

As upstream's `pkg/controller/deployment` (deployment_controller.go, sync.go),
`reconcile(key)`:

1. reads the Deployment from the cache; a selector that selects everything
   is refused (a SelectingAll warning) and only `observedGeneration` moves;
2. claims its ReplicaSets (adopting matching orphans, releasing strays);
3. a Deployment being deleted only gets its status refreshed;
4. marks a pause or resume on the Progressing condition;
5. paused, or resized (`spec.replicas` differs from a ReplicaSet's
   `desired-replicas` annotation): `sync` shares the new size out across
   the ReplicaSets in proportion (`deployment_rollout.scale`), nothing more;
6. otherwise rolls out by its strategy (`deployment_rollout.rolling` or
   `recreate`), then writes status and conditions (`deployment_status`).

The ReplicaSet for the current template is `<deployment>-<hash>`, labelled and
selected by `pod-template-hash`; its `deployment.kubernetes.io/revision` is one
more than any other's, and the Deployment carries the same annotation. Rolling
back (`kubectl rollout undo` puts an old template back) makes the old
ReplicaSet new again with a fresh revision; restarting (`kubectl rollout
restart` changes a template annotation) makes a new one. Old ReplicaSets scaled
to zero beyond `revisionHistoryLimit` are deleted, oldest revision first.
"""

from __future__ import annotations

import logging
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.apps import DEPLOYMENT, REPLICA_SET
from nanokube.api.resources.core import POD
from nanokube.client.cache import by_owner_uid, key_of
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import deployment_rollout as rollout
from nanokube.controllers import deployment_status as ds
from nanokube.controllers import deployment_util as du
from nanokube.controllers import ownership
from nanokube.controllers.base import Controller
from nanokube.controllers.status import get_condition, new_condition, set_condition, write_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 5  # upstream's --concurrent-deployment-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The Deployments to reconcile.
        self.deployments = self.watch(informers.informer(DEPLOYMENT))
        # Their ReplicaSets, whose statuses are the Deployment's observed state.
        self.replica_sets = self.watch(
            informers.informer(REPLICA_SET, indexers={ownership.OWNER_INDEX: by_owner_uid})
        )
        # Pods: Recreate waits until every old pod has stopped.
        self.pods = self.watch(
            informers.informer(POD, indexers={ownership.OWNER_INDEX: by_owner_uid})
        )
        self.enqueue_events(self.deployments)
        # ReplicaSet events: a ReplicaSet being deleted still counts until it is gone.
        ownership.OwnedEvents(
            self.deployments,
            self.enqueue,
            adopters=lambda rs: ownership.selecting(self.deployments, rs),
        ).register(self.replica_sets)
        self.pods.add_event_handler(on_delete=self._pod_deleted)

    def _pod_deleted(self, pod: Obj) -> None:
        """A Recreate rollout waits for old pods to go: look again when one does."""
        rs = ownership.resolve(self.replica_sets, pod)
        d = ownership.resolve(self.deployments, rs) if rs is not None else None
        if d is not None and not du.is_rolling(d):
            self.enqueue(d)

    # -- reconcile -----------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        d = self.cached_copy(self.deployments, key)
        if d is None:
            return
        selector_obj = (d.get("spec") or {}).get("selector")
        if (
            selector_obj is not None
            and not selector_obj.get("matchLabels")
            and not selector_obj.get("matchExpressions")
        ):
            await self._refuse_select_all(d)
            return
        rs_list = await self.replica_sets_of(d)
        if d["metadata"].get("deletionTimestamp"):
            await self.sync_status_only(d, rs_list)
            return
        await self.check_paused_conditions(d)
        if d["spec"].get("paused") or self.is_scaling_event(d, rs_list):
            await self.resize(d, rs_list)
            return
        if du.is_rolling(d):
            await rollout.rolling(self, d, rs_list)
        else:
            await rollout.recreate(self, d, rs_list, self.pod_map(d, rs_list))

    async def _refuse_select_all(self, d: Obj) -> None:
        self.events.warning(
            d,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        status = d.get("status") or {}
        if status.get("observedGeneration", 0) < d["metadata"].get("generation", 0):
            await self.update_status(
                d, {**status, "observedGeneration": d["metadata"]["generation"]}
            )

    async def replica_sets_of(self, d: Obj) -> list[Obj]:
        """The ReplicaSets this Deployment controls, after adoption and release."""
        selector = selectors.label_selector_from_object(d["spec"].get("selector"))
        candidates = self.replica_sets.list(meta.namespace(d))
        check = ownership.owner_checker(self.client, DEPLOYMENT, d)
        owned = await ownership.claim(
            self.client, REPLICA_SET, candidates, d, DEPLOYMENT, selector, check
        )
        return [copy_json(rs) for rs in owned]

    def pod_map(self, d: Obj, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        """The Deployment's pods by the uid of the ReplicaSet that controls them."""
        return {
            rs["metadata"]["uid"]: ownership.controlled_by(self.pods, rs["metadata"]["uid"])
            for rs in rs_list
        }

    def is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """`spec.replicas` differs from what an active ReplicaSet was sized for."""
        new = du.find_new(d, rs_list)
        for rs in du.active([*du.find_old(d, rs_list, new), new]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    async def check_paused_conditions(self, d: Obj) -> None:
        """Record a pause or a resume on the Progressing condition (Unknown)."""
        if not ds.has_progress_deadline(d):
            return
        conditions = copy_json(list((d.get("status") or {}).get("conditions") or ()))
        cond = get_condition(conditions, "Progressing")
        if cond is not None and cond.get("reason") == ds.TIMED_OUT:
            return
        paused_marked = cond is not None and cond.get("reason") == ds.PAUSED
        if d["spec"].get("paused") and not paused_marked:
            set_condition(
                conditions,
                new_condition("Progressing", "Unknown", ds.PAUSED, "Deployment is paused"),
            )
        elif not d["spec"].get("paused") and paused_marked:
            set_condition(
                conditions,
                new_condition("Progressing", "Unknown", ds.RESUMED, "Deployment is resumed"),
            )
        else:
            return
        await self.update_status(d, {**(d.get("status") or {}), "conditions": conditions})

    # -- the pieces rollouts are made of ------------------------------------------

    async def all_replica_sets(
        self, d: Obj, rs_list: list[Obj], create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """(new ReplicaSet, old ones); the new one's revision synced, created if asked."""
        existing = du.find_new(d, rs_list)
        old = du.find_old(d, rs_list, existing)
        new = await self.new_replica_set(d, rs_list, old, create)
        return new, old

    async def new_replica_set(
        self, d: Obj, rs_list: list[Obj], old: list[Obj], create: bool
    ) -> Obj | None:
        """`getNewReplicaSet`: find (and annotate) or create the template's ReplicaSet."""
        new_revision = str(du.max_revision(old) + 1)
        existing = du.find_new(d, rs_list)
        if existing is not None:
            rs = copy_json(existing)
            annotated = du.set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = d["spec"].get("minReadySeconds", 0) or 0
            if annotated or (rs["spec"].get("minReadySeconds", 0) or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return await self.client.update(REPLICA_SET, rs)
            await self.set_revision(d, du.annotations_of(rs).get(du.REVISION, ""))
            if ds.has_progress_deadline(d) and self._progressing(d) is None:
                await self._set_progressing(
                    d, "True", ds.FOUND_NEW_RS, f'Found new replica set "{meta.name(rs)}"'
                )
            return rs
        if not create:
            return None
        return await self._create_new_replica_set(d, old, new_revision)

    async def _create_new_replica_set(self, d: Obj, old: list[Obj], new_revision: str) -> Obj:
        template = copy_json(du.template_of(d))
        collisions = (d.get("status") or {}).get("collisionCount")
        pod_hash = du.compute_hash(template, collisions)
        template.setdefault("metadata", {})["labels"] = {
            **((template.get("metadata") or {}).get("labels") or {}),
            du.HASH_LABEL: pod_hash,
        }
        selector = copy_json(d["spec"]["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: pod_hash}
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta.name(d)}-{pod_hash}",
                "namespace": meta.namespace(d),
                "ownerReferences": [ownership.new_controller_ref(d, DEPLOYMENT)],
                "labels": dict(template["metadata"]["labels"]),
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": d["spec"].get("minReadySeconds", 0) or 0,
                "selector": selector,
                "template": template,
            },
        }
        rs["spec"]["replicas"] = du.new_rs_new_replicas(d, [*old, rs], rs)
        du.set_new_rs_annotations(d, rs, new_revision, exists=False)
        try:
            created = await self.client.create(REPLICA_SET, rs)
        except errors.AlreadyExists:
            return await self._existing_or_collision(d, rs)
        except errors.Forbidden:
            raise  # the namespace is being deleted: nothing to report
        except errors.StatusError as e:
            message = f'Failed to create new replica set "{meta.name(rs)}": {e.message}'
            if ds.has_progress_deadline(d):
                await self._set_progressing(d, "False", ds.FAILED_RS_CREATE, message)
            self.events.warning(d, ds.FAILED_RS_CREATE, message)
            raise
        if du.replicas(created) > 0:
            self.events.normal(
                d,
                "ScalingReplicaSet",
                f"Scaled up replica set {meta.name(created)} from 0 to {du.replicas(created)}",
            )
        await self.set_revision(d, new_revision)
        if ds.has_progress_deadline(d):
            await self._set_progressing(
                d, "True", ds.NEW_RS_CREATED, f'Created new replica set "{meta.name(created)}"'
            )
        return created

    async def _existing_or_collision(self, d: Obj, rs: Obj) -> Obj:
        """The name is taken: ours with this template (a stale cache), or a hash collision."""
        current = await self.client.get(REPLICA_SET, meta.name(rs), meta.namespace(rs))
        ref = ownership.controller_ref(current)
        if (
            ref is not None
            and ref.get("uid") == d["metadata"]["uid"]
            and du.equal_ignore_hash(du.template_of(current), du.template_of(d))
        ):
            return current
        status = d.get("status") or {}
        collisions = (status.get("collisionCount") or 0) + 1
        log.info("hash collision deployment=%s collisionCount=%d", key_of(d), collisions)
        await self.update_status(d, {**status, "collisionCount": collisions})
        raise errors.AlreadyExists(
            f'replicasets.apps "{meta.name(rs)}" already exists (hash collision)'
        )

    def _progressing(self, d: Obj) -> Obj | None:
        return get_condition((d.get("status") or {}).get("conditions") or [], "Progressing")

    async def _set_progressing(self, d: Obj, status: str, reason: str, message: str) -> None:
        conditions = copy_json(list((d.get("status") or {}).get("conditions") or ()))
        set_condition(conditions, new_condition("Progressing", status, reason, message))
        await self.update_status(d, {**(d.get("status") or {}), "conditions": conditions})

    async def set_revision(self, d: Obj, revision: str) -> None:
        """Copy the new ReplicaSet's revision onto the Deployment's annotations."""
        if not revision or du.annotations_of(d).get(du.REVISION) == revision:
            return
        patch = {"metadata": {"annotations": {du.REVISION: revision}}}
        updated = await self.client.patch(DEPLOYMENT, meta.name(d), patch, meta.namespace(d))
        d["metadata"] = updated["metadata"]

    async def update_status(self, d: Obj, status: Obj) -> None:
        """Write `status` and keep `d` current with what the server stored."""
        updated = await write_status(self.client, DEPLOYMENT, d, status)
        d["metadata"] = updated["metadata"]
        d["status"] = updated.get("status") or {}

    async def scale_replica_set(
        self, rs: Obj, size: int, d: Obj, operation: str = ""
    ) -> tuple[bool, Obj]:
        """Set a ReplicaSet's size and size annotations; an event when the size changed."""
        desired, maximum = du.replicas(d), du.replicas(d) + du.max_surge(d)
        resize = du.replicas(rs) != size
        if not resize and not du.replicas_annotations_need_update(rs, desired, maximum):
            return False, rs
        before = du.replicas(rs)
        body = copy_json(rs)
        body["spec"]["replicas"] = size
        du.set_replicas_annotations(body, desired, maximum)
        updated = await self.client.update(REPLICA_SET, body)
        if resize:
            operation = operation or ("up" if before < size else "down")
            self.events.normal(
                d,
                "ScalingReplicaSet",
                f"Scaled {operation} replica set {meta.name(rs)} from {before} to {size}",
            )
        return resize, updated

    async def cleanup(self, old: list[Obj], d: Obj) -> None:
        """Delete old ReplicaSets beyond `revisionHistoryLimit` that have no pods left."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not rs["metadata"].get("deletionTimestamp")]
        extra = len(alive) - limit
        if extra <= 0:
            return
        for rs in sorted(alive, key=du.revision)[:extra]:
            md = rs["metadata"]
            if (
                du.status_count(rs, "replicas")
                or du.replicas(rs)
                or md.get("generation", 0) > du.status_count(rs, "observedGeneration")
            ):
                continue
            log.info("cleaning up replicaset=%s/%s", md.get("namespace"), md["name"])
            try:
                await self.client.delete(
                    REPLICA_SET,
                    md["name"],
                    md.get("namespace", ""),
                    preconditions={"uid": md["uid"]},
                )
            except errors.NotFound:
                continue

    async def resize(self, d: Obj, rs_list: list[Obj]) -> None:
        """A resize or a paused Deployment: scale proportionally, refresh status."""
        new, old = await self.all_replica_sets(d, rs_list, create=False)
        new, old = await rollout.scale(self, d, new, old)
        if d["spec"].get("paused"):
            await self.cleanup(old, d)
        await self.sync_status(d, [*old, new], new)

    async def sync_status_only(self, d: Obj, rs_list: list[Obj]) -> None:
        new, old = await self.all_replica_sets(d, rs_list, create=False)
        await self.sync_status(d, [*old, new], new)

    async def sync_status(self, d: Obj, all_rss: list[Obj | None], new: Obj | None) -> None:
        status = ds.calculate_status(all_rss, new, d)
        if status != (d.get("status") or {}):
            await self.update_status(d, status)

    async def sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new: Obj | None) -> None:
        """Write counts and conditions; come back to check the progress deadline if stuck."""
        status = ds.rollout_status(all_rss, new, d)
        if status == (d.get("status") or {}):
            after = ds.requeue_after(d, status)
            if after is not None:
                self.queue.add_after(key_of(d), after)
            return
        await self.update_status(d, status)
