"""The StatefulSet controller against a real API server.

Aspects: pod identity (name, hostname, subdomain, labels, owner), OrderedReady
creation one ordinal at a time and scale-down from the highest ordinal,
Parallel management, claims from volumeClaimTemplates and their retention
policy, ControllerRevisions and rolling updates (with a partition),
replacement of failed pods, status and events.
"""

from __future__ import annotations

from typing import Any

from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api.resources.apps import CONTROLLER_REVISION, STATEFUL_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME_CLAIM
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.statefulset import StatefulSetController

Obj = dict[str, Any]
# Each test runs over the in-process and the HTTP client (see conftest).
CLIENTS = ("in-process", "http")
LABELS = {"app": "web"}


def stateful_set(replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": LABELS},
            "template": pod_template(LABELS),
            **spec,
        },
    }


async def pod_names(client: Client) -> list[str]:
    items = (await client.list(POD, "default"))["items"]
    return sorted(
        p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")
    )


async def wait_names(client: Client, names: list[str]) -> None:
    async def check() -> bool:
        return await pod_names(client) == names

    await eventually(check)


async def ready(client: Client, kubelet: Kubelet, name: str) -> None:
    await kubelet.ready([await client.get(POD, name, "default")])


async def test_ordered_ready_creates_one_pod_at_a_time_with_identity(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        sts = await client.create(STATEFUL_SET, stateful_set())
        await wait_names(client, ["web-0"])
        pod = await client.get(POD, "web-0", "default")
        assert pod["spec"]["hostname"] == "web-0"
        assert pod["spec"]["subdomain"] == "nginx"
        labels = pod["metadata"]["labels"]
        assert labels["app"] == "web"
        assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
        assert labels["apps.kubernetes.io/pod-index"] == "0"
        assert labels["controller-revision-hash"].startswith("web-")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
        assert pod["metadata"]["ownerReferences"][0]["controller"] is True

        # web-1 waits until web-0 is Running and Ready.
        await ready(client, kubelet, "web-0")
        await wait_names(client, ["web-0", "web-1"])
        await ready(client, kubelet, "web-1")
        await wait_names(client, ["web-0", "web-1", "web-2"])
        await ready(client, kubelet, "web-2")

        async def status_done() -> Obj | None:
            status = (await client.get(STATEFUL_SET, "web", "default")).get("status") or {}
            return status if status.get("readyReplicas") == 3 else None

        status = await eventually(status_done)
        assert status["replicas"] == 3
        assert status["availableReplicas"] == 3
        assert status["currentReplicas"] == status["updatedReplicas"] == 3
        assert (
            status["currentRevision"]
            == status["updateRevision"]
            == labels["controller-revision-hash"]
        )
        assert status["observedGeneration"] == 1

        revisions = (await client.list(CONTROLLER_REVISION, "default"))["items"]
        assert [r["metadata"]["name"] for r in revisions] == [status["updateRevision"]]
        assert revisions[0]["revision"] == 1
        assert revisions[0]["data"]["spec"]["template"]["$patch"] == "replace"

        async def events() -> list[str] | None:
            items = (await client.list(EVENT, "default"))["items"]
            msgs = sorted(e["message"] for e in items if e["reason"] == "SuccessfulCreate")
            return msgs if len(msgs) == 3 else None

        assert await eventually(events) == [
            f"create Pod web-{i} in StatefulSet web successful" for i in range(3)
        ]


async def test_ordered_scale_down_from_the_highest_ordinal(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        await client.create(STATEFUL_SET, stateful_set())
        await wait_names(client, ["web-0", "web-1", "web-2"])
        seen: list[list[str]] = []

        await client.patch(STATEFUL_SET, "web", {"spec": {"replicas": 1}}, "default")

        async def shrunk() -> bool:
            names = await pod_names(client)
            if not seen or seen[-1] != names:
                seen.append(names)
            return names == ["web-0"]

        await eventually(shrunk)
        # Never web-1 gone while web-2 stays.
        assert ["web-0", "web-2"] not in seen


async def test_parallel_creates_every_pod_at_once(
    client: Client, informers: SharedInformerFactory
) -> None:
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        await client.create(STATEFUL_SET, stateful_set(podManagementPolicy="Parallel"))
        # Nothing is ready, yet all three exist.
        await wait_names(client, ["web-0", "web-1", "web-2"])
        await client.patch(STATEFUL_SET, "web", {"spec": {"replicas": 0}}, "default")
        await wait_names(client, [])


async def test_claims_from_templates_and_retention(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    claim_template = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    spec = stateful_set(
        replicas=2,
        volumeClaimTemplates=[claim_template],
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"},
    )
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        sts = await client.create(STATEFUL_SET, spec)
        await wait_names(client, ["web-0", "web-1"])
        pod = await client.get(POD, "web-1", "default")
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod[
            "spec"
        ]["volumes"]
        claims = (await client.list(PERSISTENT_VOLUME_CLAIM, "default"))["items"]
        assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1"]
        claim = next(c for c in claims if c["metadata"]["name"] == "data-web-1")
        assert claim["metadata"]["labels"] == LABELS
        assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
        assert claim["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "web",
                "uid": sts["metadata"]["uid"],
            }
        ]

        # Scaled away, web-1 hands its claim to the garbage collector through an owner.
        await client.patch(STATEFUL_SET, "web", {"spec": {"replicas": 1}}, "default")
        await wait_names(client, ["web-0"])
        claim = await client.get(PERSISTENT_VOLUME_CLAIM, "data-web-1", "default")
        owners = {r["kind"]: r["name"] for r in claim["metadata"]["ownerReferences"]}
        assert owners == {"StatefulSet": "web", "Pod": "web-1"}

        async def events() -> bool:
            items = (await client.list(EVENT, "default"))["items"]
            return "create Claim data-web-0 Pod web-0 in StatefulSet web success" in {
                e["message"] for e in items
            }

        await eventually(events)


async def test_rolling_update_respects_the_partition(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        await client.create(STATEFUL_SET, stateful_set())
        await wait_names(client, ["web-0", "web-1", "web-2"])

        async def settled() -> Obj | None:
            status = (await client.get(STATEFUL_SET, "web", "default")).get("status") or {}
            return status if status.get("readyReplicas") == 3 else None

        first = await eventually(settled)
        patch = {
            "spec": {
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            }
        }
        await client.patch(STATEFUL_SET, "web", patch, "default")

        async def images() -> dict[str, str] | None:
            items = (await client.list(POD, "default"))["items"]
            found = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in items}
            want = {"web-0": "nginx:1.25", "web-1": "nginx:1.26", "web-2": "nginx:1.26"}
            return found if found == want else None

        await eventually(images)

        async def rolled() -> Obj | None:
            status = (await client.get(STATEFUL_SET, "web", "default")).get("status") or {}
            return status if status.get("updatedReplicas") == 2 else None

        status = await eventually(rolled)
        assert status["currentRevision"] == first["currentRevision"]
        assert status["updateRevision"] != first["updateRevision"]
        assert status["currentReplicas"] == 1
        revisions = (await client.list(CONTROLLER_REVISION, "default"))["items"]
        assert sorted(r["revision"] for r in revisions) == [1, 2]

        # Dropping the partition finishes the rollout: the update revision becomes current.
        await client.patch(
            STATEFUL_SET,
            "web",
            {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}},
            "default",
        )

        async def done() -> Obj | None:
            status = (await client.get(STATEFUL_SET, "web", "default")).get("status") or {}
            ok = status.get("currentRevision") == status.get("updateRevision")
            return status if ok and status.get("currentReplicas") == 3 else None

        await eventually(done)
        pod = await client.get(POD, "web-0", "default")
        assert pod["spec"]["containers"][0]["image"] == "nginx:1.26"


async def test_on_delete_leaves_pods_until_deleted(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        await client.create(
            STATEFUL_SET, stateful_set(replicas=2, updateStrategy={"type": "OnDelete"})
        )
        await wait_names(client, ["web-0", "web-1"])
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(STATEFUL_SET, "web", patch, "default")

        async def revised() -> bool:
            status = (await client.get(STATEFUL_SET, "web", "default")).get("status") or {}
            return status.get("observedGeneration") == 2

        await eventually(revised)
        assert (await client.get(POD, "web-1", "default"))["spec"]["containers"][0][
            "image"
        ] == "nginx:1.25"
        await client.delete(POD, "web-1", "default")

        async def recreated() -> bool:
            try:
                pod = await client.get(POD, "web-1", "default")
            except Exception:  # noqa: BLE001 - not there yet
                return False
            return pod["spec"]["containers"][0]["image"] == "nginx:1.26"

        await eventually(recreated)


async def test_failed_pod_is_recreated(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    controller = StatefulSetController(client, informers)
    async with running(informers, controller):
        await client.create(STATEFUL_SET, stateful_set(replicas=1))
        await wait_names(client, ["web-0"])
        pod = await client.get(POD, "web-0", "default")
        pod["status"] = {**pod["status"], "phase": "Failed"}
        await client.update(POD, pod, subresource="status")
        uid = pod["metadata"]["uid"]

        async def replaced() -> bool:
            try:
                fresh = await client.get(POD, "web-0", "default")
            except Exception:  # noqa: BLE001 - between delete and create
                return False
            return fresh["metadata"]["uid"] != uid

        await eventually(replaced)
