"""The local-path provisioner: a directory on a node for each claim of its class, as k3s.

k3s ships rancher/local-path-provisioner with a default StorageClass
`local-path` (provisioner `rancher.io/local-path`, WaitForFirstConsumer,
reclaim Delete). This controller plays that provisioner, driven by the
annotations the PersistentVolume controller (`volumebinding`) writes, as an
external provisioner built on sig-storage-lib-external-provisioner is:

- at start, the `local-path` StorageClass is created if absent, marked the
  default class (`storageclass.kubernetes.io/is-default-class: "true"`);
- `reconcile(namespace/name)` of a claim: provision when the claim is not
  bound, not being deleted, annotated `volume.kubernetes.io/storage-provisioner:
  rancher.io/local-path`, and of a class with that provisioner; a
  WaitForFirstConsumer class also needs the node (`volume.kubernetes.io/selected-node`).
  For an Immediate class the node is chosen here (the first ready node by
  name), where upstream local-path refuses. The volume, named
  `pvc-<claim uid>`, is a hostPath (DirectoryOrCreate) — or a `local` volume
  when the class or claim asks `volumeType: local` — at
  `STORAGE_DIR/pvc-<uid>_<namespace>_<name>`, with the claim's size and
  access modes, the class's reclaim policy, node affinity to the node
  (`kubernetes.io/hostname`), `pv.kubernetes.io/provisioned-by`, and a
  claimRef to the claim, so the PersistentVolume controller binds the two
  (events `Provisioning`, `ProvisioningSucceeded`, `ProvisioningFailed`);
- a volume it provisioned that is Released with reclaim policy Delete is
  deleted. The directory itself belongs to the node: the node agent creates
  it when a pod mounts the volume and removes directories under its storage
  directory that no PersistentVolume names any more (this controller only
  logs the path and node to clean).

`STORAGE_DIR` is `DATA_DIR/storage` (`/var/lib/nanokube/storage` by default).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM
from nanokube.api.resources.groups import STORAGE_CLASS
from nanokube.client.cache import split_key
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import volume_match
from nanokube.controllers import volumebinding as vb
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "local-path"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
DEFAULT_STORAGE_DIR = Path("/var/lib/nanokube/storage")
# Seconds before a claim that could not be provisioned (no node yet) is tried again.
RETRY_DELAY = 5.0


def default_storage_class() -> Obj:
    """The StorageClass k3s installs for the local-path provisioner."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }


def volume_path(storage_dir: Path, claim: Obj) -> str:
    """`<dir>/pvc-<uid>_<namespace>_<name>`, the folder name local-path uses."""
    md = claim["metadata"]
    return str(storage_dir / f"pvc-{md['uid']}_{md['namespace']}_{md['name']}")


def _is_ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or ()
    )


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"
    workers = 2

    def __init__(
        self,
        client: Client,
        informers: SharedInformerFactory,
        storage_dir: Path = DEFAULT_STORAGE_DIR,
    ) -> None:
        super().__init__(client, informers)
        # Where the volumes' directories live on every node.
        self.storage_dir = Path(storage_dir)
        # Claims are the keys.
        self.claims = self.watch(informers.informer(PERSISTENT_VOLUME_CLAIM))
        # Volumes: those already provisioned, and those released for deletion.
        self.volumes = self.watch(informers.informer(PERSISTENT_VOLUME))
        # Classes: which claims are ours, their reclaim policy and binding mode.
        self.classes = self.watch(informers.informer(STORAGE_CLASS))
        # Nodes: the hostname label of the chosen node; the choice for Immediate classes.
        self.nodes = self.watch(informers.informer(NODE))
        self.enqueue_events(self.claims)
        self.volumes.add_event_handler(
            self._volume_changed, lambda _o, new: self._volume_changed(new)
        )

    def _volume_changed(self, volume: Obj) -> None:
        """Our volumes share the queue with the claims, as `pv:<name>` (never a claim key)."""
        if volume_match.annotations_of(volume).get(vb.PROVISIONED_BY) == PROVISIONER:
            self.queue.add(f"pv:{meta.name(volume)}")

    async def run(self) -> None:
        """Create the default class once the caches are filled, then reconcile."""
        await self.classes.wait_for_sync()
        await self.ensure_storage_class()
        await super().run()

    async def ensure_storage_class(self) -> None:
        if self.classes.get(CLASS_NAME) is not None:
            return
        try:
            await self.client.create(STORAGE_CLASS, default_storage_class())
            log.info("created default storage class name=%s", CLASS_NAME)
        except errors.AlreadyExists:
            pass

    async def reconcile(self, key: str) -> None:
        if key.startswith("pv:"):
            await self._reclaim(key[3:])
            return
        ns, name = split_key(key)
        claim = self.claims.get(name, ns)
        if claim is None or not self._should_provision(claim):
            return
        volume_name = f"pvc-{claim['metadata']['uid']}"
        if self.volumes.get(volume_name) is not None:
            return
        sc = self.classes.get(volume_match.class_of(claim))
        assert sc is not None  # checked by _should_provision
        node = self._node_for(claim, sc)
        if node is None:
            self.events.warning(
                claim,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{meta.name(sc)}": '
                "configuration error, no node was specified",
            )
            self.enqueue_after(claim, RETRY_DELAY)
            return
        self.events.normal(
            claim,
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{ns}/{name}"',
        )
        try:
            await self.client.create(PERSISTENT_VOLUME, self.new_volume(claim, sc, node))
        except errors.AlreadyExists:
            return
        except errors.StatusError as e:
            self.events.warning(
                claim,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{meta.name(sc)}": {e}',
            )
            raise
        log.info(
            "provisioned volume=%s claim=%s/%s node=%s", volume_name, ns, name, meta.name(node)
        )
        self.events.normal(
            claim, "ProvisioningSucceeded", f"Successfully provisioned volume {volume_name}"
        )

    def _should_provision(self, claim: Obj) -> bool:
        if (claim.get("spec") or {}).get("volumeName") or claim["metadata"].get(
            "deletionTimestamp"
        ):
            return False
        annotations = volume_match.annotations_of(claim)
        requested = annotations.get(vb.STORAGE_PROVISIONER) or annotations.get(
            vb.BETA_STORAGE_PROVISIONER
        )
        if requested != PROVISIONER:
            return False
        sc = self.classes.get(volume_match.class_of(claim))
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return False
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            return bool(annotations.get(vb.SELECTED_NODE))
        return True

    def _node_for(self, claim: Obj, sc: Obj) -> Obj | None:
        selected = volume_match.annotations_of(claim).get(vb.SELECTED_NODE)
        if selected:
            return self.nodes.get(selected) or {"metadata": {"name": selected, "labels": {}}}
        ready = sorted((n for n in self.nodes.list() if _is_ready(n)), key=meta.name)
        return ready[0] if ready else None

    def new_volume(self, claim: Obj, sc: Obj, node: Obj) -> Obj:
        """The PersistentVolume for `claim` on `node` (see the module docstring)."""
        md, spec = claim["metadata"], claim.get("spec") or {}
        hostname = meta.labels(node).get(vb.HOSTNAME_LABEL) or meta.name(node)
        path = volume_path(self.storage_dir, claim)
        volume_type = (
            volume_match.annotations_of(claim).get("volumeType")
            or (sc.get("parameters") or {}).get("volumeType")
            or "hostPath"
        )
        source = (
            {"local": {"path": path}}
            if volume_type.lower() == "local"
            else {"hostPath": {"path": path, "type": "DirectoryOrCreate"}}
        )
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{md['uid']}",
                "annotations": {
                    vb.PROVISIONED_BY: PROVISIONER,
                    "local.path.provisioner/selected-node": meta.name(node),
                },
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": list(spec.get("accessModes") or ()),
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "storageClassName": meta.name(sc),
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": vb.HOSTNAME_LABEL,
                                        "operator": "In",
                                        "values": [hostname],
                                    }
                                ]
                            }
                        ]
                    }
                },
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": md["namespace"],
                    "name": md["name"],
                    "uid": md["uid"],
                    "resourceVersion": md.get("resourceVersion", ""),
                },
                **source,
            },
        }

    async def _reclaim(self, name: str) -> None:
        """Delete a released volume of ours whose policy is Delete; the node cleans the path."""
        volume = self.volumes.get(name)
        if volume is None or volume["metadata"].get("deletionTimestamp"):
            return
        spec = volume.get("spec") or {}
        if (volume.get("status") or {}).get("phase") != "Released":
            return
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path", "")
        node = volume_match.annotations_of(volume).get("local.path.provisioner/selected-node", "")
        try:
            await self.client.delete(
                PERSISTENT_VOLUME,
                name,
                preconditions={"resourceVersion": volume["metadata"]["resourceVersion"]},
            )
        except errors.NotFound:
            return
        log.info(
            "deleted released volume=%s path=%s node=%s (the node removes the path)",
            name,
            path,
            node,
        )
