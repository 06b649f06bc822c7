"""The PersistentVolume controller (`volumebinding`) and the local-path provisioner
(`localpath`) against a real API server.

Aspects: static binding both ways (claimRef, volumeName, bind-completed and
bound-by-controller annotations, phases, the smallest fitting volume,
selectors, access modes); a claim bound by the user to a volume that does
not fit; release on claim deletion (Retain keeps the volume Released); no
class and no volume; the default `local-path` class; provisioning for
WaitForFirstConsumer once a pod using the claim is scheduled (selected-node,
storage-provisioner, the hostPath at `pvc-<uid>_<ns>_<name>`, node
affinity, events) and for Immediate classes on a ready node; reclaim Delete
removes the volume; StatefulSet claims end up Bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api import errors
from nanokube.api.resources.apps import STATEFUL_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM
from nanokube.api.resources.groups import STORAGE_CLASS
from nanokube.apiserver import binding, patching
from nanokube.apiserver.server import APIServer
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import Client
from nanokube.controllers.localpath import LocalPathProvisioner
from nanokube.controllers.statefulset import StatefulSetController
from nanokube.controllers.volume_match import find_best_match
from nanokube.controllers.volumebinding import PersistentVolumeController

CLIENTS = ("in-process", "http")
Obj = dict[str, Any]
STORAGE = Path("/var/lib/nanokube-test/storage")


def pv(name: str, size: str = "1Gi", cls: str = "manual", **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.pop("accessModes", ["ReadWriteOnce"]),
            "storageClassName": cls,
            "hostPath": {"path": f"/data/{name}"},
            **spec,
        },
    }


def pvc(name: str, size: str = "500Mi", cls: str | None = "manual", **spec: Any) -> Obj:
    body: Obj = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            **spec,
        },
    }
    if cls is not None:
        body["spec"]["storageClassName"] = cls
    return body


async def bound(client: Client, claim: str) -> Obj:
    async def check() -> Obj:
        got = await client.get(PERSISTENT_VOLUME_CLAIM, claim, "default")
        assert (got.get("status") or {}).get("phase") == "Bound", got.get("status")
        return got

    return await eventually(check)


async def volume_phase(client: Client, name: str, phase: str) -> Obj:
    async def check() -> Obj:
        got = await client.get(PERSISTENT_VOLUME, name)
        assert got["status"]["phase"] == phase, got["status"]
        return got

    return await eventually(check)


async def event_reasons(client: Client, *wanted: str) -> set[str]:
    async def check() -> set[str]:
        got = {e["reason"] for e in (await client.list(EVENT, "default"))["items"]}
        assert set(wanted) <= got, got
        return got

    return await eventually(check)


async def ready_node(client: Client, name: str) -> Obj:
    node = await client.create(
        NODE, {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    )
    node["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    updated: Obj = await client.update(NODE, node, subresource="status")
    return updated


def binder(client: Client, informers: SharedInformerFactory) -> PersistentVolumeController:
    return PersistentVolumeController(client, informers)


def test_best_match_is_the_smallest_that_fits() -> None:
    claim = pvc("c", "2Gi")
    claim["metadata"]["uid"] = "u1"
    volumes = [
        {**pv("big", "10Gi"), "status": {"phase": "Available"}},
        {**pv("small", "1Gi"), "status": {"phase": "Available"}},
        {**pv("fits", "3Gi"), "status": {"phase": "Available"}},
        {**pv("rwx", "2Gi", accessModes=["ReadWriteMany"]), "status": {"phase": "Available"}},
        {**pv("other", "2Gi", cls="fast"), "status": {"phase": "Available"}},
    ]
    for v in volumes:
        v["metadata"]["uid"] = v["metadata"]["name"]
    assert find_best_match(claim, volumes, False)["metadata"]["name"] == "fits"  # type: ignore[index]
    assert find_best_match(claim, volumes, True) is None  # delayed: only pre-bound volumes


async def test_static_binding_both_ways(client: Client, informers: SharedInformerFactory) -> None:
    await client.create(PERSISTENT_VOLUME, pv("big", "10Gi"))
    await client.create(PERSISTENT_VOLUME, pv("right", "1Gi"))
    await client.create(PERSISTENT_VOLUME, pv("labelled", "1Gi", labels={"tier": "gold"}))
    async with running(informers, binder(client, informers)):
        await volume_phase(client, "big", "Available")
        claim = await client.create(PERSISTENT_VOLUME_CLAIM, pvc("data"))
        got = await bound(client, "data")
        assert got["spec"]["volumeName"] in ("right", "labelled")
        annotations = got["metadata"]["annotations"]
        assert annotations["pv.kubernetes.io/bind-completed"] == "yes"
        assert annotations["pv.kubernetes.io/bound-by-controller"] == "yes"
        assert got["status"]["capacity"] == {"storage": "1Gi"}
        assert got["status"]["accessModes"] == ["ReadWriteOnce"]
        volume = await volume_phase(client, got["spec"]["volumeName"], "Bound")
        ref = volume["spec"]["claimRef"]
        assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"]) == (
            "PersistentVolumeClaim",
            "default",
            "data",
            claim["metadata"]["uid"],
        )
        assert volume["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"

        selective = pvc("gold", selector={"matchLabels": {"tier": "gold"}})
        if got["spec"]["volumeName"] == "labelled":
            await client.create(PERSISTENT_VOLUME, pv("gold-2", "1Gi", labels={"tier": "gold"}))
        await client.create(PERSISTENT_VOLUME_CLAIM, selective)
        got = await bound(client, "gold")
        assert got["spec"]["volumeName"] in ("labelled", "gold-2")


async def test_user_bound_claim_to_a_volume_that_does_not_fit(
    client: Client, informers: SharedInformerFactory
) -> None:
    await client.create(PERSISTENT_VOLUME, pv("tiny", "100Mi"))
    await client.create(PERSISTENT_VOLUME, pv("named", "1Gi"))
    async with running(informers, binder(client, informers)):
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("a", volumeName="tiny"))
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("b", volumeName="named"))
        got = await bound(client, "b")
        assert "pv.kubernetes.io/bound-by-controller" not in got["metadata"]["annotations"]
        await event_reasons(client, "VolumeMismatch")
        claim = await client.get(PERSISTENT_VOLUME_CLAIM, "a", "default")
        assert claim["status"]["phase"] == "Pending"


async def test_release_keeps_a_retained_volume(
    client: Client, informers: SharedInformerFactory
) -> None:
    await client.create(PERSISTENT_VOLUME, pv("keep", persistentVolumeReclaimPolicy="Retain"))
    async with running(informers, binder(client, informers)):
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("data"))
        await bound(client, "data")
        await client.delete(PERSISTENT_VOLUME_CLAIM, "data", "default")
        volume = await volume_phase(client, "keep", "Released")
        assert volume["spec"]["claimRef"]["name"] == "data"


async def test_no_class_and_no_volume(client: Client, informers: SharedInformerFactory) -> None:
    async with running(informers, binder(client, informers)):
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("lonely", cls=None))
        await event_reasons(client, "FailedBinding")
        claim = await client.get(PERSISTENT_VOLUME_CLAIM, "lonely", "default")
        assert claim["status"]["phase"] == "Pending"


async def test_local_path_provisions_for_the_first_consumer(
    client: Client, informers: SharedInformerFactory
) -> None:
    await ready_node(client, "node-1")
    provisioner = LocalPathProvisioner(client, informers, storage_dir=STORAGE)
    async with running(informers, binder(client, informers), provisioner):

        async def default_class() -> Obj:
            try:
                return await client.get(STORAGE_CLASS, "local-path")
            except errors.NotFound:
                raise AssertionError("no default class yet") from None

        sc = await eventually(default_class)
        assert sc["metadata"]["annotations"] == {
            "storageclass.kubernetes.io/is-default-class": "true"
        }
        assert (sc["provisioner"], sc["volumeBindingMode"], sc["reclaimPolicy"]) == (
            "rancher.io/local-path",
            "WaitForFirstConsumer",
            "Delete",
        )
        claim = await client.create(PERSISTENT_VOLUME_CLAIM, pvc("data", "2Gi", cls="local-path"))
        await event_reasons(client, "WaitForFirstConsumer")
        pod = {
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        }
        await client.create(POD, pod)
        got = await bound(client, "data")
        uid = claim["metadata"]["uid"]
        assert got["spec"]["volumeName"] == f"pvc-{uid}"
        annotations = got["metadata"]["annotations"]
        assert annotations["volume.kubernetes.io/selected-node"] == "node-1"
        assert annotations["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
        volume = await volume_phase(client, f"pvc-{uid}", "Bound")
        assert volume["spec"]["hostPath"] == {
            "path": str(STORAGE / f"pvc-{uid}_default_data"),
            "type": "DirectoryOrCreate",
        }
        assert volume["spec"]["capacity"] == {"storage": "2Gi"}
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}
                ]
            }
        ]
        assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == (
            "rancher.io/local-path"
        )
        await event_reasons(client, "ExternalProvisioning", "ProvisioningSucceeded")

        await client.delete(POD, "app", "default", grace_period_seconds=0)
        await client.delete(PERSISTENT_VOLUME_CLAIM, "data", "default")

        async def volume_gone() -> bool:
            try:
                await client.get(PERSISTENT_VOLUME, f"pvc-{uid}")
            except errors.NotFound:
                return True
            return False

        await eventually(volume_gone)


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
async def test_immediate_class_provisions_on_a_ready_node(
    client: Client, informers: SharedInformerFactory, policy: str
) -> None:
    await ready_node(client, "node-b")
    await ready_node(client, "node-a")
    await client.create(
        STORAGE_CLASS,
        {
            "metadata": {"name": "now"},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "Immediate",
            "reclaimPolicy": policy,
            "parameters": {"volumeType": "local"},
        },
    )
    provisioner = LocalPathProvisioner(client, informers, storage_dir=STORAGE)
    async with running(informers, binder(client, informers), provisioner):
        claim = await client.create(PERSISTENT_VOLUME_CLAIM, pvc("data", cls="now"))
        await bound(client, "data")
        name = f"pvc-{claim['metadata']['uid']}"
        volume = await client.get(PERSISTENT_VOLUME, name)
        assert volume["spec"]["local"]["path"].endswith("_default_data")
        terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["node-a"]
        await client.delete(PERSISTENT_VOLUME_CLAIM, "data", "default")
        if policy == "Retain":
            await volume_phase(client, name, "Released")
        else:

            async def gone() -> bool:
                try:
                    await client.get(PERSISTENT_VOLUME, name)
                except errors.NotFound:
                    return True
                return False

            await eventually(gone)


async def test_stateful_set_claims_end_up_bound(
    server: APIServer, client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    """The StatefulSet controller makes the claims; a stand-in scheduler binds the pods."""
    await ready_node(client, "node-1")
    scheduler = InProcessClient(
        server.resources, patching.patch, {("pods", "binding"): binding.bind}
    )
    labels = {"app": "db"}
    sts = {
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": pod_template(labels),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "local-path",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    controllers = (
        StatefulSetController(client, informers),
        binder(client, informers),
        LocalPathProvisioner(client, informers, storage_dir=STORAGE),
    )
    async with running(informers, *controllers):
        await client.create(STATEFUL_SET, sts)

        async def pods_made() -> list[Obj] | None:
            items = (await client.list(POD, "default"))["items"]
            return items if len(items) == 2 else None

        for pod in await eventually(pods_made):
            body = {"metadata": {"name": pod["metadata"]["name"]}, "target": {"name": "node-1"}}
            await scheduler.create_subresource(
                POD, pod["metadata"]["name"], "default", "binding", body
            )
        await bound(client, "data-db-0")
        await bound(client, "data-db-1")


async def test_volume_pre_bound_by_name_and_a_lost_claim(
    client: Client, informers: SharedInformerFactory
) -> None:
    ref = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "mine"}
    await client.create(PERSISTENT_VOLUME, pv("reserved", claimRef=ref))
    await client.create(PERSISTENT_VOLUME, pv("decoy", "600Mi"))
    async with running(informers, binder(client, informers)):
        await volume_phase(client, "reserved", "Available")
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("mine"))
        got = await bound(client, "mine")
        assert got["spec"]["volumeName"] == "reserved"  # not the smaller free one
        volume = await client.get(PERSISTENT_VOLUME, "reserved")
        assert volume["spec"]["claimRef"]["uid"] == got["metadata"]["uid"]
        assert "pv.kubernetes.io/bound-by-controller" not in (
            volume["metadata"].get("annotations") or {}
        )

        await client.delete(PERSISTENT_VOLUME, "reserved")

        async def lost() -> bool:
            claim = await client.get(PERSISTENT_VOLUME_CLAIM, "mine", "default")
            return claim["status"]["phase"] == "Lost"

        await eventually(lost)
        await event_reasons(client, "ClaimLost")


async def test_in_tree_provisioner_names_provision_nothing(
    client: Client, informers: SharedInformerFactory
) -> None:
    await client.create(
        STORAGE_CLASS,
        {
            "metadata": {"name": "local-disks"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        },
    )
    async with running(informers, binder(client, informers)):
        await client.create(PERSISTENT_VOLUME_CLAIM, pvc("data", cls="local-disks"))
        await event_reasons(client, "ProvisioningFailed")
        claim = await client.get(PERSISTENT_VOLUME_CLAIM, "data", "default")
        assert "volume.kubernetes.io/storage-provisioner" not in (
            claim["metadata"].get("annotations") or {}
        )
