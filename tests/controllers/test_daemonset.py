"""The DaemonSet controller against a real API server (no scheduler: pods stay pinned).

Aspects: one pod per eligible node (nodeSelector, taints and tolerations),
pods pinned by node affinity with the default DaemonSet tolerations and
revision labels, nodes joining and leaving, failed pods replaced, rolling
updates within maxUnavailable, ControllerRevisions, and status counts.
"""

from __future__ import annotations

from typing import Any

from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api.resources.apps import CONTROLLER_REVISION, DAEMON_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.daemonset import DaemonSetController
from nanokube.controllers.daemonset_nodes import target_node

Obj = dict[str, Any]
# Each test runs over the in-process and the HTTP client (see conftest).
CLIENTS = ("in-process", "http")
LABELS = {"app": "agent"}


def daemon_set(**spec: Any) -> Obj:
    template = pod_template(LABELS)
    template["spec"]["nodeSelector"] = {"role": "worker"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": LABELS}, "template": template, **spec},
    }


async def add_node(
    client: Client, name: str, role: str = "worker", taints: list[Obj] | None = None
) -> None:
    node: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"role": role}},
    }
    if taints:
        node["spec"] = {"taints": taints}
    await client.create(NODE, node)


async def pods_by_node(client: Client) -> dict[str, list[Obj]]:
    found: dict[str, list[Obj]] = {}
    for pod in (await client.list(POD, "default"))["items"]:
        if not pod["metadata"].get("deletionTimestamp"):
            found.setdefault(target_node(pod), []).append(pod)
    return found


async def wait_nodes(client: Client, nodes: list[str]) -> dict[str, list[Obj]]:
    async def check() -> dict[str, list[Obj]] | None:
        found = await pods_by_node(client)
        ok = sorted(found) == nodes and all(len(v) == 1 for v in found.values())
        return found if ok else None

    if not nodes:

        async def empty() -> bool:
            return not await pods_by_node(client)

        await eventually(empty)
        return {}
    return await eventually(check)


async def test_one_pod_per_eligible_node(client: Client, informers: SharedInformerFactory) -> None:
    await add_node(client, "n1")
    await add_node(client, "n2")
    await add_node(client, "other", role="db")
    await add_node(
        client, "tainted", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]
    )
    controller = DaemonSetController(client, informers)
    async with running(informers, controller):
        ds = await client.create(DAEMON_SET, daemon_set())
        found = await wait_nodes(client, ["n1", "n2"])
        pod = found["n1"][0]
        md, spec = pod["metadata"], pod["spec"]
        assert md["generateName"] == "agent-"
        assert md["labels"]["app"] == "agent"
        assert md["labels"]["pod-template-generation"] == "1"
        assert md["labels"]["controller-revision-hash"]
        assert md["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
        assert spec["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ] == {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]
        }
        tolerations = {(t["key"], t["effect"]) for t in spec["tolerations"]}
        assert tolerations == {
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        }
        revisions = (await client.list(CONTROLLER_REVISION, "default"))["items"]
        assert len(revisions) == 1
        assert (
            revisions[0]["metadata"]["name"] == f"agent-{md['labels']['controller-revision-hash']}"
        )

        async def status() -> Obj | None:
            s = (await client.get(DAEMON_SET, "agent", "default")).get("status") or {}
            return s if s.get("currentNumberScheduled") == 2 else None

        s = await eventually(status)
        assert s["desiredNumberScheduled"] == 2
        assert s["numberMisscheduled"] == 0
        assert s["numberReady"] == 0
        assert s["updatedNumberScheduled"] == 2
        assert s["observedGeneration"] == 1

        # A toleration lets the daemon onto the tainted node; a new worker gets one too.
        await add_node(client, "n3")
        await wait_nodes(client, ["n1", "n2", "n3"])
        tolerate = [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
        await client.patch(
            DAEMON_SET,
            "agent",
            {"spec": {"template": {"spec": {"tolerations": tolerate}}}},
            "default",
        )
        await wait_nodes(client, ["n1", "n2", "n3", "tainted"])

        # A node that stops matching loses its pod.
        await client.patch(NODE, "n2", {"metadata": {"labels": {"role": "db"}}})
        await wait_nodes(client, ["n1", "n3", "tainted"])


async def test_no_execute_taint_evicts_and_no_schedule_does_not(
    client: Client, informers: SharedInformerFactory
) -> None:
    await add_node(client, "n1")
    await add_node(client, "n2")
    controller = DaemonSetController(client, informers)
    async with running(informers, controller):
        await client.create(DAEMON_SET, daemon_set())
        await wait_nodes(client, ["n1", "n2"])
        await client.patch(NODE, "n1", {"spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]}})
        await client.patch(NODE, "n2", {"spec": {"taints": [{"key": "x", "effect": "NoExecute"}]}})
        await wait_nodes(client, ["n1"])

        async def misscheduled() -> bool:
            s = (await client.get(DAEMON_SET, "agent", "default")).get("status") or {}
            return s.get("numberMisscheduled") == 1 and s.get("desiredNumberScheduled") == 0

        await eventually(misscheduled)


async def test_failed_pod_is_replaced(client: Client, informers: SharedInformerFactory) -> None:
    await add_node(client, "n1")
    controller = DaemonSetController(client, informers)
    async with running(informers, controller):
        await client.create(DAEMON_SET, daemon_set())
        pod = (await wait_nodes(client, ["n1"]))["n1"][0]
        pod["status"] = {**pod["status"], "phase": "Failed"}
        await client.update(POD, pod, subresource="status")

        async def replaced() -> bool:
            found = await pods_by_node(client)
            return [p["metadata"]["uid"] for p in found.get("n1", [])] not in (
                [],
                [pod["metadata"]["uid"]],
            )

        await eventually(replaced)


async def test_rolling_update_within_max_unavailable(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    for name in ("n1", "n2", "n3"):
        await add_node(client, name)
    controller = DaemonSetController(client, informers)
    async with running(informers, controller):
        await client.create(DAEMON_SET, daemon_set())
        before = await wait_nodes(client, ["n1", "n2", "n3"])
        old_hash = before["n1"][0]["metadata"]["labels"]["controller-revision-hash"]

        async def all_ready() -> bool:
            s = (await client.get(DAEMON_SET, "agent", "default")).get("status") or {}
            return s.get("numberReady") == 3

        await eventually(all_ready)
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(DAEMON_SET, "agent", patch, "default")
        live_counts: list[int] = []

        async def rolled() -> bool:
            found = await pods_by_node(client)
            live_counts.append(sum(len(v) for v in found.values()))
            images = {p["spec"]["containers"][0]["image"] for v in found.values() for p in v}
            return sorted(found) == ["n1", "n2", "n3"] and images == {"nginx:1.26"}

        await eventually(rolled)
        # Never more than one node without its daemon (maxUnavailable 1, no surge).
        assert min(live_counts) >= 2

        async def updated() -> Obj | None:
            s = (await client.get(DAEMON_SET, "agent", "default")).get("status") or {}
            return (
                s
                if s.get("updatedNumberScheduled") == 3 and s.get("numberAvailable") == 3
                else None
            )

        await eventually(updated)
        revisions = (await client.list(CONTROLLER_REVISION, "default"))["items"]
        assert len(revisions) == 2
        found = await pods_by_node(client)
        assert all(
            p["metadata"]["labels"]["controller-revision-hash"] != old_hash
            for v in found.values()
            for p in v
        )
