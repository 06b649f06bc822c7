"""The PersistentVolume controller: binds claims to volumes, both ways, and releases them.

As upstream's `pkg/controller/volume/persistentvolume/pv_controller.go`, with
two work queues: claims (`namespace/name`) and volumes (`name`).

`reconcile` (claims) — a claim not yet bound (no `pv.kubernetes.io/bind-completed`):

- without `spec.volumeName`: the best volume is, among those pre-bound to
  this claim, the first; else among Available volumes of the same class,
  volumeMode and access modes (a superset), capacity at least the request,
  labels matching the claim's selector and not being deleted, the smallest.
  Found: bind. Not found: a claim whose class binds WaitForFirstConsumer and
  that no scheduled pod uses yet waits (`WaitForFirstConsumer` event); a
  class with a provisioner gets the claim annotated
  `volume.kubernetes.io/storage-provisioner` (and the beta key) for that
  external provisioner (`ExternalProvisioning` event) — in-tree plugin names
  (`kubernetes.io/...`, such as no-provisioner) provision nothing here
  (`ProvisioningFailed`); without a class the claim stays Pending
  (`FailedBinding`);
- with `spec.volumeName` (bound by the user): bind to that volume if it is
  free and satisfies the claim (else `VolumeMismatch`), or finish a binding
  the volume already points back to.

A bound claim whose volume is gone or bound to another claim becomes Lost.

Binding writes the volume first (`spec.claimRef`, annotation
`pv.kubernetes.io/bound-by-controller` when the controller chose it, phase
Bound), then the claim (`spec.volumeName`, `pv.kubernetes.io/bind-completed`,
`bound-by-controller` when the controller chose the volume; status Bound with
the volume's capacity and access modes). Every write carries the cached
resourceVersion, so a stale cache ends in a Conflict and a retry, never in a
double binding.

`sync_volume`: no claimRef → Available; a claimRef by name only (pre-bound by
the user) → Available, and the claim is queued; a claim that is gone (checked
with a live read) → Released, then the reclaim policy: Retain keeps it,
Delete is left to the external provisioner that made it
(`pv.kubernetes.io/provisioned-by`) — a volume nobody provisioned gets
`VolumeFailedDelete`; a claim bound elsewhere → the volume is unbound
(claimRef removed if the controller set it, else only its uid) and Available.

Deviation: upstream leaves WaitForFirstConsumer claims to the scheduler's
VolumeBinding plugin, which picks the node and then binds a volume that fits
it or writes `volume.kubernetes.io/selected-node` on the claim for the
provisioner. nanokube's scheduler does not look at volumes, so this
controller does that step after the fact: once a pod using the claim has
`spec.nodeName`, it binds a volume whose node affinity admits that node, or
annotates the claim with the node for the provisioner.
"""

from __future__ import annotations

import logging
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.core_storage import (
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
)
from nanokube.api.resources.groups import STORAGE_CLASS
from nanokube.client.cache import split_key
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.client.workqueue import WorkQueue
from nanokube.controllers.base import Controller
from nanokube.controllers.volume_match import (
    annotations_of,
    class_of,
    find_best_match,
    is_volume_bound_to_claim,
    mismatch,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
CLAIM_INDEX = "claims"
HOSTNAME_LABEL = "kubernetes.io/hostname"


# -- pure helpers --------------------------------------------------------------------


def claims_of_pod(pod: Obj) -> list[str]:
    """Index: `namespace/claim` for each persistentVolumeClaim volume of a pod."""
    ns = meta.namespace(pod)
    return [
        f"{ns}/{v['persistentVolumeClaim']['claimName']}"
        for v in (pod.get("spec") or {}).get("volumes") or ()
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"
    workers = 1

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # Claims are the keys of `self.queue`; volumes those of `volume_queue`.
        self.claims = self.watch(informers.informer(PERSISTENT_VOLUME_CLAIM))
        self.volumes = self.watch(informers.informer(PERSISTENT_VOLUME))
        # Classes: the binding mode and the provisioner of a claim.
        self.classes = self.watch(informers.informer(STORAGE_CLASS))
        # Pods by claim, to see when a WaitForFirstConsumer claim gets its consumer's node.
        self.pods = self.watch(informers.informer(POD, indexers={CLAIM_INDEX: claims_of_pod}))
        # Nodes: the labels a volume's node affinity is checked against.
        self.nodes = self.watch(informers.informer(NODE))
        self.volume_queue: WorkQueue[str] = WorkQueue(f"{self.name}-volumes")
        self.claims.add_event_handler(
            self.enqueue, lambda _o, new: self.enqueue(new), self._claim_deleted
        )
        self.volumes.add_event_handler(
            self._volume_changed, lambda _o, new: self._volume_changed(new), self._volume_deleted
        )
        self.pods.add_event_handler(self._pod_changed, lambda _o, new: self._pod_changed(new))

    def work_queues(self) -> list[tuple[WorkQueue[str], Any]]:
        return [(self.queue, None), (self.volume_queue, self.sync_volume)]

    # -- event handlers: they only enqueue ----------------------------------------

    def _volume_changed(self, volume: Obj) -> None:
        self.volume_queue.add(meta.name(volume))
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"{ref.get('namespace', '')}/{ref['name']}")
        elif (volume.get("status") or {}).get("phase") == "Available":
            # A free volume: the waiting claims of its class may take it now, rather
            # than at upstream's next periodic resync.
            for claim in self.claims.list():
                if not (claim.get("spec") or {}).get("volumeName") and class_of(claim) == class_of(
                    volume
                ):
                    self.enqueue(claim)

    def _claim_deleted(self, claim: Obj) -> None:
        """Its volume is released now: sync it."""
        name = (claim.get("spec") or {}).get("volumeName")
        if name:
            self.volume_queue.add(name)

    def _volume_deleted(self, volume: Obj) -> None:
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"{ref.get('namespace', '')}/{ref['name']}")

    def _pod_changed(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            for key in claims_of_pod(pod):
                self.queue.add(key)

    # -- claims --------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        claim = self.claims.get(name, ns)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        if annotations_of(claim).get(BIND_COMPLETED):
            await self._sync_bound_claim(claim)
        elif (claim.get("spec") or {}).get("volumeName"):
            await self._sync_prebound_claim(claim)
        else:
            await self._sync_unbound_claim(claim)

    def _class(self, claim: Obj) -> Obj | None:
        name = class_of(claim)
        return self.classes.get(name) if name else None

    def _consumer_node(self, claim: Obj) -> Obj | None:
        """The node of a scheduled pod using the claim (the scheduler's choice), or None."""
        for pod in self.pods.by_index(CLAIM_INDEX, f"{meta.namespace(claim)}/{meta.name(claim)}"):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and not pod["metadata"].get("deletionTimestamp"):
                node = self.nodes.get(node_name)
                return node or {
                    "metadata": {"name": node_name, "labels": {HOSTNAME_LABEL: node_name}}
                }
        return None

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        sc = self._class(claim)
        delay = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        node = self._consumer_node(claim) if delay else None
        volume = find_best_match(claim, self.volumes.list(), delay, node)
        if volume is not None:
            await self._bind(volume, claim)
            return
        if delay and node is None and SELECTED_NODE not in annotations_of(claim):
            self.events.normal(
                claim,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            return
        if sc is not None and sc.get("provisioner"):
            await self._request_provisioning(claim, sc, node)
            return
        self.events.normal(
            claim,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )

    async def _request_provisioning(self, claim: Obj, sc: Obj, node: Obj | None) -> None:
        """Hand the claim to its class's external provisioner (annotations, event)."""
        provisioner = sc["provisioner"]
        if provisioner.startswith("kubernetes.io/"):
            # In-tree plugin names (kubernetes.io/no-provisioner, ...): none provisions here.
            self.events.warning(
                claim, "ProvisioningFailed", f"no volume plugin matched name: {provisioner}"
            )
            return
        wanted = {STORAGE_PROVISIONER: provisioner, BETA_STORAGE_PROVISIONER: provisioner}
        if node is not None and SELECTED_NODE not in annotations_of(claim):
            wanted[SELECTED_NODE] = meta.name(node)
        if any(annotations_of(claim).get(k) != v for k, v in wanted.items()):
            patch = {
                "metadata": {
                    "annotations": wanted,
                    "resourceVersion": claim["metadata"]["resourceVersion"],
                }
            }
            await self.client.patch(
                PERSISTENT_VOLUME_CLAIM, meta.name(claim), patch, meta.namespace(claim)
            )
        self.events.normal(
            claim,
            "ExternalProvisioning",
            "Waiting for a volume to be created either by the external provisioner "
            f"'{provisioner}' or manually by the system administrator. If volume creation is "
            "delayed, please verify that the provisioner is running and correctly registered.",
        )

    async def _sync_prebound_claim(self, claim: Obj) -> None:
        name = claim["spec"]["volumeName"]
        volume = self.volumes.get(name)
        if volume is None:
            await self._claim_phase(claim, "Pending")
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            why = mismatch(volume, claim)
            if why:
                self.events.warning(
                    claim, "VolumeMismatch", f'Cannot bind to requested volume "{name}": {why}'
                )
                await self._claim_phase(claim, "Pending")
                return
            await self._bind(volume, claim)
        elif is_volume_bound_to_claim(volume, claim):
            await self._bind(volume, claim)
        else:
            await self._claim_phase(claim, "Pending")  # the volume serves another claim

    async def _sync_bound_claim(self, claim: Obj) -> None:
        name = (claim.get("spec") or {}).get("volumeName")
        volume = self.volumes.get(name) if name else None
        if volume is None:
            message = (
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                if name
                else "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
            )
            if (claim.get("status") or {}).get("phase") != "Lost":
                self.events.warning(claim, "ClaimLost", message)
            await self._claim_phase(claim, "Lost")
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or is_volume_bound_to_claim(volume, claim):
            await self._bind(volume, claim)
            return
        if (claim.get("status") or {}).get("phase") != "Lost":
            self.events.warning(
                claim,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
        await self._claim_phase(claim, "Lost")

    # -- binding -------------------------------------------------------------------

    async def _bind(self, volume: Obj, claim: Obj) -> None:
        """Bind the volume to the claim, then the claim to the volume (each step if needed)."""
        volume = await self._bind_volume(volume, claim)
        await self._volume_phase(volume, "Bound")
        claim = await self._bind_claim(claim, volume)
        vspec = volume.get("spec") or {}
        status = {
            **(claim.get("status") or {}),
            "phase": "Bound",
            "capacity": copy_json(vspec.get("capacity") or {}),
            "accessModes": list(vspec.get("accessModes") or ()),
        }
        if status != claim.get("status"):
            body = copy_json(claim)
            body["status"] = status
            await self.client.update(PERSISTENT_VOLUME_CLAIM, body, subresource="status")
            log.info(
                "claim bound claim=%s/%s volume=%s",
                meta.namespace(claim),
                meta.name(claim),
                meta.name(volume),
            )

    async def _bind_volume(self, volume: Obj, claim: Obj) -> Obj:
        cmd = claim["metadata"]
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") == cmd.get("uid") and ref.get("name") == cmd["name"]:
            return volume
        body = copy_json(volume)
        if not ref:
            body["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
        body["spec"]["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "namespace": cmd.get("namespace", ""),
            "name": cmd["name"],
            "uid": cmd["uid"],
            "apiVersion": "v1",
            "resourceVersion": cmd.get("resourceVersion", ""),
        }
        updated: Obj = await self.client.update(PERSISTENT_VOLUME, body)
        return updated

    async def _bind_claim(self, claim: Obj, volume: Obj) -> Obj:
        spec = claim.get("spec") or {}
        annotations = annotations_of(claim)
        set_name = not spec.get("volumeName")
        if not set_name and annotations.get(BIND_COMPLETED):
            return claim
        body = copy_json(claim)
        wanted = body["metadata"].setdefault("annotations", {})
        wanted[BIND_COMPLETED] = "yes"
        if set_name:
            body["spec"]["volumeName"] = meta.name(volume)
            wanted[BOUND_BY_CONTROLLER] = "yes"
        updated: Obj = await self.client.update(PERSISTENT_VOLUME_CLAIM, body)
        return updated

    async def _claim_phase(self, claim: Obj, phase: str) -> None:
        if (claim.get("status") or {}).get("phase") == phase:
            return
        body = copy_json(claim)
        body["status"] = {**(claim.get("status") or {}), "phase": phase}
        await self.client.update(PERSISTENT_VOLUME_CLAIM, body, subresource="status")

    async def _volume_phase(self, volume: Obj, phase: str, message: str = "") -> Obj:
        if (volume.get("status") or {}).get("phase") == phase:
            return volume
        body = copy_json(volume)
        status: Obj = {"phase": phase, "lastPhaseTransitionTime": meta.now_rfc3339()}
        if message:
            status["message"] = message
        body["status"] = status
        updated: Obj = await self.client.update(PERSISTENT_VOLUME, body, subresource="status")
        return updated

    # -- volumes -------------------------------------------------------------------

    async def sync_volume(self, name: str) -> None:
        volume = self.volumes.get(name)
        if volume is None or volume["metadata"].get("deletionTimestamp"):
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            await self._volume_phase(volume, "Available")
            return
        key = f"{ref.get('namespace', '')}/{ref.get('name', '')}"
        if not ref.get("uid"):
            self.queue.add(key)  # pre-bound by the user: the claim's sync binds it
            await self._volume_phase(volume, "Available")
            return
        claim = await self._live_claim(ref)
        if claim is None:
            await self._release(volume)
            return
        claim_volume = (claim.get("spec") or {}).get("volumeName")
        if not claim_volume:
            self.queue.add(key)  # half bound: the claim's sync finishes it
        elif claim_volume == name:
            await self._volume_phase(volume, "Bound")
        else:
            await self._unbind(volume)

    async def _live_claim(self, ref: Obj) -> Obj | None:
        """The claim the volume points at, read live (a cache miss must not release a volume)."""
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        claim = self.claims.get(name, ns)
        if claim is None:
            try:
                claim = await self.client.get(PERSISTENT_VOLUME_CLAIM, name, ns)
            except errors.NotFound:
                return None
        if claim["metadata"].get("uid") != ref.get("uid"):
            return None
        return claim

    async def _release(self, volume: Obj) -> None:
        phase = (volume.get("status") or {}).get("phase")
        if phase not in ("Released", "Failed"):
            volume = await self._volume_phase(volume, "Released")
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain" or phase == "Failed":
            return
        if policy == "Delete" and annotations_of(volume).get(PROVISIONED_BY):
            return  # the external provisioner that made it deletes it
        reason = "VolumeFailedDelete" if policy == "Delete" else "VolumeFailedRecycle"
        message = (
            "error getting deleter volume plugin for volume "
            f'"{meta.name(volume)}": no deletable volume plugin matched'
            if policy == "Delete"
            else "No recycler plugin found for the volume!"
        )
        self.events.warning(volume, reason, message)
        await self._volume_phase(volume, "Failed", message)

    async def _unbind(self, volume: Obj) -> None:
        """upstream's unbindVolume: forget the claim the controller chose; keep the user's."""
        body = copy_json(volume)
        annotations = body["metadata"].get("annotations") or {}
        if annotations.pop(BOUND_BY_CONTROLLER, None) is not None:
            body["spec"].pop("claimRef", None)
        else:
            body["spec"]["claimRef"].pop("uid", None)
        body["metadata"]["annotations"] = annotations
        updated = await self.client.update(PERSISTENT_VOLUME, body)
        await self._volume_phase(updated, "Available")
