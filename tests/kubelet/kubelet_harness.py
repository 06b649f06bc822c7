"""A real node for kubelet tests: API server, Node object, OCI runtime, busybox image.

`node` (a fixture; import it into a test module) starts an API server on a loopback
port (memory store), an HTTP client, a minimal Node object for this host, the real
`OCIRuntime` on a bridge and subnet of its own (``nkkl0``, 10.196.0.0/24) with state
under the test's temporary directory, and a `Kubelet` with fast back-off (1 s
doubling to 4 s) and a fast relist. Teardown stops the kubelet, removes every sandbox
(containers, IPs, namespaces, cgroups) and sweeps mounts left under the temporary
directory, whether the test passed or not.

Skipped, with the missing requirement named, without root, runc, busybox-static, the
CNI plugins or the cgroup v1 memory controller.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import free_port

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.core_node import NODE
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client.http import HTTPClient
from nanokube.kubelet.kubelet import Kubelet, KubeletConfig
from nanokube.kubelet.services import HostPathVolumes, ResolvedImage, StaticImages
from nanokube.network.cni import CNI, NetworkConfig
from nanokube.runtime import testimage
from nanokube.runtime.oci import cgroups, linux
from nanokube.runtime.oci.runtime import OCIRuntime, Paths
from nanokube.storage.memory import MemoryStore

Obj = dict[str, Any]
BRIDGE = "nkkl0"
SUBNET = "10.196.0.0/24"
NODE_NAME = "kubelet-test-node"
HOST_IP = "10.196.0.1"
IMAGE = "busybox"


def missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "kubelet tests need root"
    if shutil.which("runc") is None:
        return "kubelet tests need runc (apt-get install runc)"
    if not os.path.exists(testimage.BUSYBOX):
        return "kubelet tests need busybox-static (apt-get install busybox-static)"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "kubelet tests need CNI plugins (apt-get install containernetworking-plugins)"
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        return "kubelet tests need the cgroup v1 memory controller at /sys/fs/cgroup/memory"
    return None


def make_runtime(base: Path, owner: int = 0) -> OCIRuntime:
    """The runtime over `base`; cgroups under ``/nanokube-kltest-<owner>`` (the test
    process by default, also for an agent process the test starts)."""
    network = CNI(
        NetworkConfig(
            subnet=SUBNET,
            name="nkkubelet",
            bridge=BRIDGE,
            conf_dir=str(base / "cni-conf"),
            data_dir=str(base / "cni"),
        )
    )
    network.write_conflist()
    paths = Paths(
        state_dir=str(base / "run"),
        data_dir=str(base / "data"),
        log_dir=str(base / "logs"),
        cgroup_root=f"/nanokube-kltest-{owner or os.getpid()}",
    )
    return OCIRuntime(network, paths)


@dataclass
class Node:
    """Everything a kubelet test drives; `restart_agent` is a kill -9 of the agent."""

    server: APIServer
    client: HTTPClient
    runtime: OCIRuntime
    kubelet: Kubelet
    images: StaticImages
    volumes: HostPathVolumes
    base: Path
    config: KubeletConfig

    async def create_pod(self, pod: Obj) -> Obj:
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")
        pod["metadata"].setdefault("namespace", "default")
        pod["spec"].setdefault("nodeName", NODE_NAME)
        pod["spec"].setdefault("terminationGracePeriodSeconds", 2)
        for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            c.setdefault("image", IMAGE)
            c.setdefault("imagePullPolicy", "IfNotPresent")
        created: Obj = await self.client.create(POD, pod)
        return created

    async def get_pod(self, name: str, namespace: str = "default") -> Obj:
        pod: Obj = await self.client.get(POD, name, namespace)
        return pod

    async def wait_pod(self, name: str, check: Callable[[Obj], bool], timeout: float = 20.0) -> Obj:
        """Poll the pod until `check` holds (a test helper, not a timing assert)."""
        deadline = time.monotonic() + timeout
        pod: Obj = {}
        while time.monotonic() < deadline:
            try:
                pod = await self.get_pod(name)
            except errors.NotFound:
                pod = {}
            if pod and check(pod):
                return pod
            await asyncio.sleep(0.05)
        raise AssertionError(f"pod {name} never matched; last status: {pod.get('status')}")

    async def wait_gone(self, name: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await self.get_pod(name)
            except errors.NotFound:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"pod {name} was never deleted")

    async def events(self, name: str) -> list[Obj]:
        await self.kubelet.events.flush()
        items: list[Obj] = (await self.client.list(EVENT, "default"))["items"]
        return [e for e in items if e["involvedObject"].get("name") == name]

    async def restart_agent(self) -> None:
        """What ``kill -9`` of the agent leaves: running containers, no agent state."""
        await self.kubelet.stop()
        self.runtime = make_runtime(self.base)
        self.kubelet = new_kubelet(
            self.client, self.runtime, self.images, self.volumes, self.config
        )
        await self.kubelet.start()


def container_status(pod: Obj, name: str, init: bool = False) -> Obj:
    key = "initContainerStatuses" if init else "containerStatuses"
    for s in (pod.get("status") or {}).get(key) or []:
        if s["name"] == name:
            return dict(s)
    return {}


def condition(pod: Obj, type_: str) -> str:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c["status"])
    return ""


def new_kubelet(
    client: HTTPClient,
    runtime: OCIRuntime,
    images: StaticImages,
    volumes: HostPathVolumes,
    config: KubeletConfig,
) -> Kubelet:
    return Kubelet(client, runtime, images, volumes, config)


def _sweep_mounts(prefix: str) -> None:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        linux.umount(target)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    return testimage.build_busybox_rootfs(tmp_path_factory.mktemp("image") / "busybox")


@pytest.fixture
async def node(busybox_rootfs: Path, tmp_path: Path) -> AsyncIterator[Node]:
    server, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
    client = HTTPClient(f"http://127.0.0.1:{server.config.port}")
    await client.create(
        NODE,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME},
            "status": {
                "addresses": [{"type": "InternalIP", "address": HOST_IP}],
                "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
            },
        },
    )
    images = StaticImages(
        {
            IMAGE: ResolvedImage(
                [str(busybox_rootfs)], testimage.IMAGE_CONFIG, "nanokube.local/busybox@sha256:0"
            )
        }
    )
    volumes = HostPathVolumes(str(tmp_path / "volumes"))
    config = KubeletConfig(
        node_name=NODE_NAME,
        host_ip=HOST_IP,
        node_allocatable={"cpu": "2", "memory": "2Gi"},
        relist_period=0.1,
        backoff_base=1.0,
        backoff_cap=4.0,
        config_retry=1.0,
        root_dir=str(tmp_path / "kubelet"),
    )
    runtime = make_runtime(tmp_path)
    kubelet = new_kubelet(client, runtime, images, volumes, config)
    await kubelet.start()
    n = Node(server, client, runtime, kubelet, images, volumes, tmp_path, config)
    try:
        yield n
    finally:
        await n.kubelet.stop()
        for sb in await n.runtime.list_sandboxes():
            await n.runtime.remove_sandbox(sb.id)
        _sweep_mounts(str(tmp_path))
        cgroups.remove(n.runtime.paths.cgroup_root)
        await client.close()
        await server.cache.stop()
        await runner.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _remove_bridge() -> Any:
    yield
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
