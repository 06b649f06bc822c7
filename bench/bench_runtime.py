"""Pod start figures of the OCI runtime: sandbox, container create, start, removal.

Run (root, runc, busybox-static, containernetworking-plugins):
    .venv/bin/python bench/bench_runtime.py [--pods N] [--host-port]

Prints medians and extremes only (no asserts). Target: a pod with one container
running in < 150 ms (podman kube play of the same pod: median 211 ms on this machine
kind, MACHINE-NOTES). Uses its own bridge (nkb0), subnet and temporary directories.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from nanokube.network.cni import CNI, NetworkConfig
from nanokube.runtime import contract as c
from nanokube.runtime import testimage
from nanokube.runtime.oci import cgroups, linux
from nanokube.runtime.oci.runtime import OCIRuntime, Paths


def line(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{name:<28} median {statistics.median(ms):6.1f} ms   min {ms[0]:6.1f}   max {ms[-1]:6.1f}"
    )


async def main(pods: int, host_port: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rootfs = testimage.build_busybox_rootfs(base / "busybox")
        network = CNI(
            NetworkConfig(
                subnet="10.199.9.0/24",
                name="nkbench",
                bridge="nkb0",
                conf_dir=str(base / "conf"),
                data_dir=str(base / "cni"),
            )
        )
        paths = Paths(str(base / "run"), str(base / "data"), str(base / "logs"), "/nanokube-bench")
        rt = OCIRuntime(network, paths)
        figures: dict[str, list[float]] = {}
        ports = [c.PortMapping(container_port=80, host_port=18090)] if host_port else []
        for i in range(pods):
            t0 = time.perf_counter()
            sb = await rt.create_sandbox(
                c.SandboxConfig(uid=f"u{i}", name=f"p{i}", namespace="b", port_mappings=ports)
            )
            t1 = time.perf_counter()
            cid = await rt.create_container(
                sb.id, c.ContainerConfig(name="app", layers=[str(rootfs)], command=["sleep", "60"])
            )
            t2 = time.perf_counter()
            await rt.start_container(cid)
            t3 = time.perf_counter()
            await rt.stop_container(cid, 0)
            t4 = time.perf_counter()
            await rt.remove_sandbox(sb.id)
            t5 = time.perf_counter()
            for name, value in (
                ("sandbox create", t1 - t0),
                ("container create", t2 - t1),
                ("container start", t3 - t2),
                ("pod running (total)", t3 - t0),
                ("container stop (SIGKILL)", t4 - t3),
                ("sandbox remove", t5 - t4),
            ):
                figures.setdefault(name, []).append(value)
        print(f"--- {pods} pods, 1 busybox container each, hostPort={'yes' if host_port else 'no'}")
        for name, values in figures.items():
            print(line(name, values))
        cgroups.remove("/nanokube-bench")
        linux.umount(str(base / "run" / "netns"))
    subprocess.run(["ip", "link", "del", "nkb0"], capture_output=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--host-port", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.pods, args.host_port))
