"""Simulated nodes against a real API server (memory store), with the node IPAM controller.

Aspects: registration (labels, zones, capacity, conditions, nodeInfo,
addresses) and Leases; lease renewal; the pod timeline (ContainerCreating,
Running with an IP of the node's podCIDR, conditions, container statuses);
exits by annotation and by `sh -c "exit N"` under each restartPolicy;
CrashLoopBackOff restarts and their doubling back-off; graceful deletion;
stop and start; `usage`; and the timeline rules of `simulated_pods` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from support import eventually

from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import LEASE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.controllers.nodeipam import NodeIPAMController
from nanokube.kubelet import simulated_pods
from nanokube.kubelet.simulated import (
    STOPPED_ANNOTATION,
    SimulatedNodeOptions,
    SimulatedNodes,
    run_simulated_nodes,
    usage,
)

Obj = dict[str, Any]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def simulated(client: InProcessClient, **options: Any) -> AsyncIterator[SimulatedNodes]:
    """Simulated nodes (fast leases and back-off) and the IPAM controller, registered."""
    informers = SharedInformerFactory(client)
    opts = SimulatedNodeOptions(
        **{"count": 2, "renew_interval": 0.2, "backoff_base": 0.2, **options}
    )
    nodes = SimulatedNodes(client, opts, informers)
    ipam = NodeIPAMController(client, informers)
    ipam.start()
    task = asyncio.create_task(nodes.run())
    try:
        assert await nodes.wait_registered(10)
        yield nodes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ipam.stop()
        await informers.shutdown()


def pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], **spec},
    }


async def bind(client: InProcessClient, name: str, node: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"kind": "Node", "name": node},
    }
    await client.create_subresource(POD, name, "default", "binding", body)


async def run_pod(client: InProcessClient, body: Obj, node: str = "sim-0001") -> None:
    await client.create(POD, body)
    await bind(client, body["metadata"]["name"], node)


def phase_is(
    client: InProcessClient, name: str, *phases: str
) -> Callable[[], Awaitable[Obj | None]]:
    async def check() -> Obj | None:
        p = await client.get(POD, name, "default")
        return p if p.get("status", {}).get("phase") in phases else None

    return check


def conditions(obj: Obj) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"].get("conditions") or ()}


# -- nodes and leases ------------------------------------------------------------


async def test_nodes_register_as_a_kubelet_would(client: InProcessClient) -> None:
    async with simulated(client, count=4):

        async def networked() -> list[Obj] | None:
            items = (await client.list(NODE))["items"]
            return (
                items
                if all(conditions(n)["NetworkUnavailable"] == "False" for n in items)
                else None
            )

        nodes = {n["metadata"]["name"]: n for n in await eventually(networked)}
        leases = (await client.list(LEASE, "kube-node-lease"))["items"]
    assert sorted(nodes) == ["sim-0001", "sim-0002", "sim-0003", "sim-0004"]
    node = nodes["sim-0001"]
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "sim-0001"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64"
    assert labels["node.kubernetes.io/instance-type"] == "simulated"
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes.values()}
    assert len(zones) == 3
    status = node["status"]
    assert status["capacity"] == {
        "cpu": "4",
        "memory": "16Gi",
        "pods": "110",
        "ephemeral-storage": "100Gi",
    }
    assert status["allocatable"] == status["capacity"]
    assert conditions(node) == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "Ready": "True",
        "NetworkUnavailable": "False",
    }
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "KubeletReady"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.33.1-nanokube"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "simulated://1"
    types = {a["type"]: a["address"] for a in status["addresses"]}
    assert types["Hostname"] == "sim-0001"
    ipaddress.ip_address(types["InternalIP"])
    assert len({n["status"]["addresses"][0]["address"] for n in nodes.values()}) == 4
    assert sorted(lease["metadata"]["name"] for lease in leases) == sorted(nodes)
    lease = next(x for x in leases if x["metadata"]["name"] == "sim-0001")
    assert lease["spec"]["holderIdentity"] == "sim-0001"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]


async def test_leases_are_renewed_and_stop_with_the_node(client: InProcessClient) -> None:
    async def renew_time() -> str:
        lease = await client.get(LEASE, "sim-0001", "kube-node-lease")
        return str(lease["spec"]["renewTime"])

    async with simulated(client, count=1) as nodes:
        first = await renew_time()
        await eventually(lambda: _changed(renew_time, first))
        await nodes.stop("sim-0001")
        assert nodes.is_stopped("sim-0001")
        node = await client.get(NODE, "sim-0001")
        assert node["metadata"]["annotations"][STOPPED_ANNOTATION] == "true"
        await asyncio.sleep(0.3)  # let a renewal that was in flight land
        frozen = await renew_time()
        await asyncio.sleep(0.6)  # three renew intervals
        assert await renew_time() == frozen
        await nodes.start("sim-0001")
        await eventually(lambda: _changed(renew_time, frozen))


async def _changed(read: Callable[[], Awaitable[str]], old: str) -> bool:
    return await read() != old


async def test_the_stop_annotation_is_honoured_from_outside(client: InProcessClient) -> None:
    async with simulated(client, count=1) as nodes:
        patch = {"metadata": {"annotations": {STOPPED_ANNOTATION: "true"}}}
        await client.patch(NODE, "sim-0001", patch)

        async def stopped() -> bool:
            return nodes.is_stopped("sim-0001")

        await eventually(stopped)
        await client.patch(
            NODE, "sim-0001", {"metadata": {"annotations": {STOPPED_ANNOTATION: None}}}
        )

        async def started() -> bool:
            return not nodes.is_stopped("sim-0001")

        await eventually(started)


# -- pods ------------------------------------------------------------------------


async def test_a_pod_goes_through_container_creating_to_running(client: InProcessClient) -> None:
    async with simulated(client, start_delay=0.5):
        await run_pod(client, pod("web"))

        async def creating() -> Obj | None:
            p = await client.get(POD, "web", "default")
            statuses = p["status"].get("containerStatuses") or []
            waiting = statuses and statuses[0]["state"].get("waiting")
            return p if waiting and waiting["reason"] == "ContainerCreating" else None

        p = await eventually(creating)
        assert p["status"]["phase"] == "Pending"
        assert conditions(p)["Ready"] == "False"
        p = await eventually(phase_is(client, "web", "Running"))
        node = await client.get(NODE, "sim-0001")
    status = p["status"]
    cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
    assert ipaddress.ip_address(status["podIP"]) in cidr
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == node["status"]["addresses"][0]["address"]
    assert status["startTime"]
    assert conditions(p) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (cs,) = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["state"]["running"]["startedAt"]
    assert cs["containerID"].startswith("simulated://")
    assert cs["imageID"] == "simulated://nginx:1.25"
    assert cs["image"] == "nginx:1.25"


async def test_pods_get_distinct_ips_and_host_network_pods_the_node_ip(
    client: InProcessClient,
) -> None:
    async with simulated(client, count=1):
        for name in ("a", "b"):
            await run_pod(client, pod(name))
        await run_pod(client, pod("host", hostNetwork=True))
        a = await eventually(phase_is(client, "a", "Running"))
        b = await eventually(phase_is(client, "b", "Running"))
        host = await eventually(phase_is(client, "host", "Running"))
    assert a["status"]["podIP"] != b["status"]["podIP"]
    assert host["status"]["podIP"] == host["status"]["hostIP"]


@pytest.mark.parametrize(
    ("annotations", "command", "phase", "code"),
    [
        ({simulated_pods.EXIT_CODE: "0"}, None, "Succeeded", 0),
        ({simulated_pods.EXIT_CODE: "1", simulated_pods.RUN_SECONDS: "0.2"}, None, "Failed", 1),
        ({}, ["sh", "-c", "exit 3"], "Failed", 3),
        ({simulated_pods.RUN_SECONDS: "0.1"}, None, "Succeeded", 0),
    ],
)
async def test_containers_exit_as_declared_with_restart_policy_never(
    client: InProcessClient,
    annotations: dict[str, str],
    command: list[str] | None,
    phase: str,
    code: int,
) -> None:
    body = pod("job", annotations, restartPolicy="Never")
    if command:
        body["spec"]["containers"][0]["command"] = command
    async with simulated(client, count=1):
        await run_pod(client, body)
        p = await eventually(phase_is(client, "job", "Succeeded", "Failed"))
    assert p["status"]["phase"] == phase
    (cs,) = p["status"]["containerStatuses"]
    terminated = cs["state"]["terminated"]
    assert terminated["exitCode"] == code
    assert terminated["reason"] == ("Completed" if code == 0 else "Error")
    assert cs["restartCount"] == 0 and not cs["ready"]
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


async def test_failing_containers_restart_with_crash_loop_back_off(client: InProcessClient) -> None:
    body = pod("crash", {simulated_pods.EXIT_CODE: "2"}, restartPolicy="OnFailure")
    async with simulated(client, count=1):
        await run_pod(client, body)

        async def restarted_twice() -> Obj | None:
            p = await client.get(POD, "crash", "default")
            statuses = p["status"].get("containerStatuses") or [{}]
            return p if statuses[0].get("restartCount", 0) >= 2 else None

        p = await eventually(restarted_twice)
    assert p["status"]["phase"] == "Running"
    (cs,) = p["status"]["containerStatuses"]
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    state = cs["state"]
    if "waiting" in state:
        assert state["waiting"]["reason"] == "CrashLoopBackOff"
        assert "restarting failed container=app pod=crash_default" in state["waiting"]["message"]


async def test_on_failure_does_not_restart_a_successful_container(client: InProcessClient) -> None:
    body = pod("once", {simulated_pods.EXIT_CODE: "0"}, restartPolicy="OnFailure")
    async with simulated(client, count=1):
        await run_pod(client, body)
        p = await eventually(phase_is(client, "once", "Succeeded"))
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_graceful_deletion_stops_and_removes_the_pod(client: InProcessClient) -> None:
    async with simulated(client, count=1) as nodes:
        await run_pod(client, pod("web"))
        await eventually(phase_is(client, "web", "Running"))
        deleted = await client.delete(POD, "web", "default")
        assert deleted["metadata"].get("deletionTimestamp")  # graceful: the node confirms

        async def gone() -> bool:
            items = (await client.list(POD, "default"))["items"]
            return not items

        await eventually(gone)
        assert not nodes.runs


async def test_a_stopped_node_leaves_its_pods_alone_until_started(client: InProcessClient) -> None:
    async with simulated(client, count=1) as nodes:
        await nodes.stop("sim-0001")
        await run_pod(client, pod("web"))
        await asyncio.sleep(0.3)
        assert (await client.get(POD, "web", "default"))["status"]["phase"] == "Pending"
        await nodes.start("sim-0001")
        await eventually(phase_is(client, "web", "Running"))


async def test_run_simulated_nodes_runs_until_stop(client: InProcessClient) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulated_nodes(client, SimulatedNodeOptions(count=2), stop))

    async def registered() -> bool:
        return len((await client.list(NODE))["items"]) == 2

    await eventually(registered)
    stop.set()
    nodes = await asyncio.wait_for(task, 5)
    assert nodes.names == ["sim-0001", "sim-0002"]


# -- usage and timelines -------------------------------------------------------------


def test_usage_reads_the_annotations_of_running_pods() -> None:
    body = pod("web", {simulated_pods.CPU_USAGE: "250m", simulated_pods.MEMORY_USAGE: "64Mi"})
    assert usage(body) == (0, 0)
    body["status"] = {"phase": "Running"}
    assert usage(body) == (250_000_000, 64 * 1024 * 1024)
    assert usage({**pod("plain"), "status": {"phase": "Running"}}) == (1_000_000, 8 * 1024 * 1024)


def test_command_exit_codes() -> None:
    assert simulated_pods.command_exit_code({"command": ["sh", "-c", "exit 7"]}) == 7
    assert simulated_pods.command_exit_code({"command": ["/bin/sh"], "args": ["-c", "exit 1"]}) == 1
    assert simulated_pods.command_exit_code({"command": ["sh", "-c", "sleep 1; exit 1"]}) is None
    assert simulated_pods.command_exit_code({"args": ["exit 1"]}) is None


def test_back_off_doubles_up_to_the_maximum() -> None:
    body = pod("crash", {simulated_pods.EXIT_CODE: "1"})
    run = simulated_pods.new_run(body, "10.42.0.2", now=1000.0, start_delay=0.0)
    starts = []
    t = 1000.0
    for _ in range(7):
        due = simulated_pods.advance(run, t, backoff_base=10.0, backoff_max=60.0)
        assert due is not None
        t = due
        c = run.containers[0]
        if c.state == "waiting":
            starts.append(c.next_start - c.finished_at)
    assert starts[:4] == [10.0, 20.0, 40.0, 60.0]
    assert run.containers[0].restart_count >= 4


def test_init_containers_complete_before_the_pod_runs() -> None:
    body = pod("init", initContainers=[{"name": "setup", "image": "busybox"}])
    run = simulated_pods.new_run(body, "10.42.0.2", now=1000.0, start_delay=1.0)
    assert simulated_pods.advance(run, 1000.0, 10.0, 300.0) == 1001.0
    status = simulated_pods.pod_status(body, run, "172.30.0.1")
    assert status["phase"] == "Pending"
    assert conditions({"status": status})["Initialized"] == "False"
    assert simulated_pods.advance(run, 1001.0, 10.0, 300.0) is None
    status = simulated_pods.pod_status(body, run, "172.30.0.1")
    assert status["phase"] == "Running"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert conditions({"status": status})["Initialized"] == "True"


async def test_a_node_without_a_pod_cidr_reports_its_network_unavailable(
    client: InProcessClient,
) -> None:
    informers = SharedInformerFactory(client)
    nodes = SimulatedNodes(client, SimulatedNodeOptions(count=1, renew_interval=0.2), informers)
    task = asyncio.create_task(nodes.run())
    try:
        assert await nodes.wait_registered(10)
        node = await client.get(NODE, "sim-0001")
        network = next(c for c in node["status"]["conditions"] if c["type"] == "NetworkUnavailable")
        assert (network["status"], network["reason"]) == ("True", "NoRouteCreated")
        await run_pod(client, pod("web"))
        await asyncio.sleep(0.3)
        assert (await client.get(POD, "web", "default"))["status"]["phase"] == "Pending"
        ipam = NodeIPAMController(client, informers)
        ipam.start()
        await eventually(phase_is(client, "web", "Running"))

        async def network_up() -> bool:
            return conditions(await client.get(NODE, "sim-0001"))["NetworkUnavailable"] == "False"

        await eventually(network_up)
        await ipam.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await informers.shutdown()
