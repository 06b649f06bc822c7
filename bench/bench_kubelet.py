"""Pod create → Running through the kubelet: API server, informer, pod worker, runc.

Run (root, runc, busybox-static, containernetworking-plugins):
    .venv/bin/python bench/bench_kubelet.py [--pods N] [--client http|inprocess]

Each round creates a one-container busybox pod (``sleep``, image cached, pull policy
IfNotPresent) bound to the node, and measures from the create call until a watch on
the pod sees ``status.phase: Running`` (what ``kubectl wait`` would see); the pod is
deleted and gone before the next round. Prints medians and extremes only (no
asserts). Target: p50 ≤ 200 ms (``podman kube play`` of the same pod: median 211 ms
on this machine kind, MACHINE-NOTES). Uses its own bridge (nkbk0) and subnet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServerConfig, start
from nanokube.client.http import HTTPClient
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import Client
from nanokube.kubelet.kubelet import Kubelet, KubeletConfig
from nanokube.kubelet.services import HostPathVolumes, ResolvedImage, StaticImages
from nanokube.network.cni import CNI, NetworkConfig
from nanokube.runtime import testimage
from nanokube.runtime.oci import cgroups, linux
from nanokube.runtime.oci.runtime import OCIRuntime, Paths
from nanokube.storage.memory import MemoryStore

BRIDGE = "nkbk0"
NODE_NAME = "bench-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def line(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{name:<28} median {statistics.median(ms):6.1f} ms   min {ms[0]:6.1f}   max {ms[-1]:6.1f}"
        f"   (n={len(ms)})"
    )


async def wait_running(client: Client, name: str, rv: str) -> None:
    async for etype, obj in client.watch(
        POD, "default", resource_version=rv, field_selector=f"metadata.name={name}"
    ):
        if etype != "BOOKMARK" and (obj.get("status") or {}).get("phase") == "Running":
            return


async def wait_gone(client: Client, name: str) -> None:
    while True:
        try:
            await client.get(POD, name, "default")
        except errors.NotFound:
            return
        await asyncio.sleep(0.02)


async def main(pods: int, client_kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rootfs = testimage.build_busybox_rootfs(base / "busybox")
        server, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
        client: Any = (
            HTTPClient(f"http://127.0.0.1:{server.config.port}")
            if client_kind == "http"
            else InProcessClient(server.resources, patching.patch)
        )
        await client.create(
            NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME}}
        )
        network = CNI(
            NetworkConfig(
                subnet="10.195.0.0/24",
                name="nkbench",
                bridge=BRIDGE,
                conf_dir=str(base / "cni-conf"),
                data_dir=str(base / "cni"),
            )
        )
        network.write_conflist()
        runtime = OCIRuntime(
            network,
            Paths(
                state_dir=str(base / "run"),
                data_dir=str(base / "data"),
                log_dir=str(base / "logs"),
                cgroup_root=f"/nanokube-bench-{os.getpid()}",
            ),
        )
        images = StaticImages(
            {"busybox": ResolvedImage([str(rootfs)], testimage.IMAGE_CONFIG, "busybox")}
        )
        kubelet = Kubelet(
            client,
            runtime,
            images,
            HostPathVolumes(str(base / "volumes")),
            KubeletConfig(node_name=NODE_NAME, host_ip="10.195.0.1"),
        )
        await kubelet.start()
        times = []
        try:
            for i in range(pods):
                name = f"bench-{i}"
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "nodeName": NODE_NAME,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "c",
                                "image": "busybox",
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "1000"],
                            }
                        ],
                    },
                }
                began = time.perf_counter()
                created = await client.create(POD, pod)
                await wait_running(client, name, created["metadata"]["resourceVersion"])
                times.append(time.perf_counter() - began)
                await client.delete(POD, name, "default")
                await wait_gone(client, name)
            print(line("pod create -> Running", times))
        finally:
            await kubelet.stop()
            for sb in await runtime.list_sandboxes():
                await runtime.remove_sandbox(sb.id)
            with open("/proc/self/mountinfo") as f:
                targets = [ln.split()[4] for ln in f if ln.split()[4].startswith(tmp)]
            for target in sorted(targets, key=len, reverse=True):
                linux.umount(target)
            cgroups.remove(runtime.paths.cgroup_root)
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
            await client.close()
            await server.cache.stop()
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--client", choices=("http", "inprocess"), default="http")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.pods, args.client))
