"""The real node's registration, status and Lease against a real API server (memory store).

Aspects: the registered Node (this machine's capacity and allocatable,
addresses, nodeInfo, labels, taints, kubelet port); Ready False until node
IPAM (the real controller) assigns a podCIDR, then Ready with the network
condition; status written only on change or when the report interval has
passed; node events; taking over an existing Node; Lease creation, renewal
and re-creation; re-registration after the Node is deleted; the pure
condition builder (pressure reasons, kept transition times); machine facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, TypeVar

from support import eventually

from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.groups import LEASE
from nanokube.client.events import EventRecorder
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.controllers.nodeipam import NodeIPAMController
from nanokube.kubelet import node_machine
from nanokube.kubelet.node import (
    KUBELET_VERSION,
    POD_CIDR_NOT_READY,
    NodeConfig,
    NodeStatusManager,
    conditions,
)

Obj = dict[str, Any]
T = TypeVar("T")


def config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return NodeConfig(
        name="node-a",
        data_dir=tmp_path,
        internal_ip="10.1.2.3",
        kubelet_port=10299,
        runtime_version="runc://1.1.5",
        **kw,
    )


def cond(node: Obj, type_: str) -> Obj:
    return next(c for c in node["status"]["conditions"] if c["type"] == type_)


async def test_registration(client: InProcessClient, tmp_path: Path) -> None:
    taint = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    mgr = NodeStatusManager(client, config(tmp_path, labels={"role": "edge"}, taints=[taint]))
    await mgr.register()
    node = await client.get(NODE, "node-a")
    status = node["status"]
    mem_total = node_machine.meminfo()["MemTotal"]
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["capacity"]["memory"] == f"{mem_total // 1024}Ki"
    assert status["capacity"]["pods"] == "110"
    assert status["allocatable"]["memory"] == f"{(mem_total - 100 * 1024 * 1024) // 1024}Ki"
    total, _ = node_machine.filesystem(tmp_path)
    assert status["capacity"]["ephemeral-storage"] == f"{total // 1024}Ki"
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "10.1.2.3"},
        {"type": "Hostname", "address": "node-a"},
    ]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10299}}
    info = status["nodeInfo"]
    assert info["containerRuntimeVersion"] == "runc://1.1.5"
    assert info["kubeletVersion"] == KUBELET_VERSION == "v1.33.1-nanokube"
    assert (
        info["osImage"] == node_machine.os_image() and info["kernelVersion"] == os.uname().release
    )
    assert info["architecture"] == node_machine.architecture()
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node-a" and labels["role"] == "edge"
    assert labels["kubernetes.io/arch"] == node_machine.architecture()
    assert node["spec"]["taints"] == [taint]
    ready = cond(node, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "KubeletNotReady",
        POD_CIDR_NOT_READY,
    )
    assert cond(node, "MemoryPressure")["reason"] == "KubeletHasSufficientMemory"
    assert not any(c["type"] == "NetworkUnavailable" for c in status["conditions"])
    lease = await client.get(LEASE, "node-a", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]


async def test_ready_once_ipam_assigns_a_pod_cidr(client: InProcessClient, tmp_path: Path) -> None:
    informers = SharedInformerFactory(client)
    ipam = NodeIPAMController(client, informers)
    recorder = EventRecorder(client, "kubelet", "node-a")
    mgr = NodeStatusManager(client, config(tmp_path), recorder=recorder)
    ipam.start()
    informers.start()
    try:
        await mgr.register()
        cidr = await asyncio.wait_for(mgr.wait_for_pod_cidr(poll=0.05), 10)
        assert cidr.startswith("10.42.") and cidr.endswith("/24")
        assert await mgr.post_status()
        node = await client.get(NODE, "node-a")
        assert cond(node, "Ready")["status"] == "True"
        assert cond(node, "Ready")["reason"] == "KubeletReady"
        assert cond(node, "NetworkUnavailable")["status"] == "False"
        # Nothing changed: nothing written (the Lease is the heartbeat).
        assert not await mgr.post_status()
        mgr.readiness.append(lambda: "runtime not ready: runc missing")
        assert await mgr.post_status()
        node = await client.get(NODE, "node-a")
        assert cond(node, "Ready")["message"] == "runtime not ready: runc missing"
        await recorder.flush()
        events = (await client.list(EVENT, "default"))["items"]
        reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "node-a"}
        assert {"Starting", "NodeReady", "NodeNotReady", "NodeHasSufficientMemory"} <= reasons
        ready = next(e for e in events if e["reason"] == "NodeReady")
        assert ready["message"] == "Node node-a status is now: NodeReady"
        assert ready["involvedObject"]["kind"] == "Node"
    finally:
        await recorder.close()
        await ipam.stop()
        await informers.shutdown()


async def test_report_interval_forces_a_write(client: InProcessClient, tmp_path: Path) -> None:
    mgr = NodeStatusManager(client, config(tmp_path, report_seconds=0.0))
    await mgr.register()
    before = cond(await client.get(NODE, "node-a"), "Ready")["lastHeartbeatTime"]
    await asyncio.sleep(1.1)  # heartbeats have a resolution of one second
    assert await mgr.post_status()
    after = cond(await client.get(NODE, "node-a"), "Ready")
    assert after["lastHeartbeatTime"] > before
    assert after["lastTransitionTime"] == before  # same status: the transition stays


async def test_takes_over_an_existing_node(client: InProcessClient, tmp_path: Path) -> None:
    await client.create(
        NODE,
        {
            "metadata": {"name": "node-a", "labels": {"kept": "yes"}},
            "spec": {"podCIDR": "10.42.7.0/24", "podCIDRs": ["10.42.7.0/24"]},
        },
    )
    mgr = NodeStatusManager(client, config(tmp_path))
    await mgr.register()
    node = await client.get(NODE, "node-a")
    assert node["metadata"]["labels"]["kept"] == "yes"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["spec"]["podCIDR"] == "10.42.7.0/24"
    assert cond(node, "Ready")["status"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == KUBELET_VERSION


async def test_lease_and_reregistration(client: InProcessClient, tmp_path: Path) -> None:
    mgr = NodeStatusManager(
        client, config(tmp_path, lease_seconds=0.05, status_seconds=0.05, report_seconds=0.0)
    )
    task = asyncio.create_task(mgr.run())
    try:
        await asyncio.wait_for(mgr.registered.wait(), 10)
        first = (await client.get(LEASE, "node-a", "kube-node-lease"))["spec"]["renewTime"]

        async def renewed() -> bool:
            lease = await client.get(LEASE, "node-a", "kube-node-lease")
            return bool(lease["spec"]["renewTime"] != first)

        await eventually(renewed)
        await client.delete(LEASE, "node-a", "kube-node-lease")

        async def lease_back() -> Obj | None:
            with contextlib.suppress(Exception):
                return await client.get(LEASE, "node-a", "kube-node-lease")
            return None

        await eventually(lease_back)
        old_uid = (await client.get(NODE, "node-a"))["metadata"]["uid"]
        await client.delete(NODE, "node-a")

        async def registered_again() -> Obj | None:
            with contextlib.suppress(Exception):
                node = await client.get(NODE, "node-a")
                return node if node["metadata"]["uid"] != old_uid else None
            return None

        await eventually(registered_again)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_conditions_pure() -> None:
    pressure = node_machine.Pressure(memory=True, disk=True, pid=True)
    out = conditions(None, pressure, "not yet", network_ready=False, now="T1")
    by_type = {c["type"]: c for c in out}
    assert by_type["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert by_type["DiskPressure"]["reason"] == "KubeletHasDiskPressure"
    assert by_type["PIDPressure"]["reason"] == "KubeletHasInsufficientPID"
    assert by_type["Ready"]["status"] == "False"
    other = {"type": "KernelDeadlock", "status": "False", "reason": "KernelHasNoDeadlock"}
    again = conditions([*out, other], node_machine.Pressure(disk=True), None, True, now="T2")
    by_type = {c["type"]: c for c in again}
    assert by_type["DiskPressure"]["lastTransitionTime"] == "T1"  # unchanged status
    assert by_type["DiskPressure"]["lastHeartbeatTime"] == "T2"
    assert by_type["MemoryPressure"]["lastTransitionTime"] == "T2"  # changed
    assert by_type["Ready"]["reason"] == "KubeletReady"
    assert by_type["NetworkUnavailable"]["reason"] == "RouteCreated"
    assert by_type["KernelDeadlock"] == other  # another owner's condition is kept


def test_machine_facts(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert node_machine.os_image(str(release)) == "Debian GNU/Linux 12 (bookworm)"
    assert node_machine.os_image(str(tmp_path / "none")) == "Linux"
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       2048 kB\nMemAvailable:   1024 kB\nHugePages_Total:       0\n")
    assert node_machine.meminfo(str(info)) == {
        "MemTotal": 2097152,
        "MemAvailable": 1048576,
        "HugePages_Total": 0,
    }
    cap = node_machine.Capacity(cpu=2, memory=1024 * 1024 * 1024, ephemeral_storage=10 * 1024**3)
    assert cap.allocatable()["memory"] == f"{(1024 - 100) * 1024}Ki"
    assert cap.allocatable()["ephemeral-storage"] == str(9 * 1024**3)
    pid_max, running = node_machine.pid_limits()
    assert pid_max > running > 0
    assert node_machine.internal_ip("https://127.0.0.1:6443")  # never empty
