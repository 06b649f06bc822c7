"""Resource metrics: node figures from /proc, rates from two samples, the Prometheus text,
and a real busy container's cgroup figures (root, runc and busybox-static; skipped without).

Aspects: busy jiffies of /proc/stat in ns and MemTotal − MemAvailable; the
MetricsSource answers (None before two samples, per-container nanocores from
the counter difference, a container new since the older sample left out, a
counter that went back gives 0); the `/metrics/resource` body (names, labels,
escaping, pod sums, timestamps); a container spinning a CPU measured through
the OCI runtime's cgroups.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nanokube.kubelet.metrics import (
    ContainerSample,
    ResourceMetrics,
    Sample,
    node_cpu_ns,
    node_memory_working_set,
    render_prometheus,
)
from nanokube.network.cni import CNI, NetworkConfig
from nanokube.runtime import contract, testimage
from nanokube.runtime.oci import cgroups, linux
from nanokube.runtime.oci.runtime import OCIRuntime, Paths


def cs(
    cid: str, uid: str, name: str, cpu: int, mem: int, t: float, pod: str = "web"
) -> ContainerSample:
    return ContainerSample(cid, "default", pod, uid, name, cpu, mem, 100.0, t)


def test_node_figures(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 10 50 9000 40 5 5 2 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    clk = os.sysconf("SC_CLK_TCK")
    assert node_cpu_ns(str(stat)) == (100 + 10 + 50 + 5 + 5 + 2) * 1_000_000_000 // clk
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  4000 kB\nMemFree:  1000 kB\nMemAvailable:  3000 kB\n")
    assert node_memory_working_set(str(meminfo)) == 1000 * 1024
    assert node_cpu_ns() > 0 and node_memory_working_set() > 0


def test_rates_from_two_samples() -> None:
    metrics = ResourceMetrics(runtime=None, node_name="n1")  # type: ignore[arg-type]
    pod = {"metadata": {"uid": "u1"}}
    assert metrics.pod_usage(pod) is None and metrics.node_usage({}, []) is None
    metrics.add(Sample(10.0, 5_000_000_000, 100, [cs("a", "u1", "app", 1_000_000_000, 10, 10.0)]))
    assert metrics.pod_usage(pod) is None  # one sample: no rate yet
    metrics.add(
        Sample(
            20.0,
            15_000_000_000,
            200,
            [
                cs("a", "u1", "app", 3_500_000_000, 50, 20.0),  # 2.5 s of CPU in 10 s
                cs("b", "u1", "sidecar", 1_000, 7, 20.0),  # new: no rate yet
                cs("c", "u2", "other", 1, 1, 20.0),
            ],
        )
    )
    assert metrics.pod_usage(pod) == {"app": (250_000_000, 50)}
    assert metrics.pod_usage({"metadata": {"uid": "gone"}}) is None
    assert metrics.node_usage({}, []) == (1_000_000_000, 200)  # one core busy
    # A container restarted in place (its counter went back) reads 0, not a negative rate.
    metrics.add(Sample(30.0, 16_000_000_000, 200, [cs("a", "u1", "app", 5, 50, 30.0)]))
    assert metrics.pod_usage(pod) == {"app": (0, 50)}
    assert len(metrics.samples) == 2


def test_prometheus_text() -> None:
    sample = Sample(
        1700000000.5,
        12_500_000_000,
        2048,
        [
            cs("a", "u1", "app", 1_500_000_000, 100, 1700000000.25),
            cs("b", "u1", "side", 500_000_000, 50, 1700000000.5),
            cs("c", "u2", 'we"ird', 1, 1, 1700000000.5, pod="db"),
        ],
    )
    text = render_prometheus(sample)
    assert "# TYPE container_cpu_usage_seconds_total counter\n" in text
    assert (
        'container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} '
        "1.500000000 1700000000250\n"
    ) in text
    assert (
        'container_memory_working_set_bytes{container="side",namespace="default",pod="web"} '
        "50 1700000000500\n"
    ) in text
    assert 'container="we\\"ird"' in text
    assert (
        'pod_cpu_usage_seconds_total{namespace="default",pod="web"} 2.000000000 1700000000500\n'
        in text
    )
    assert 'pod_memory_working_set_bytes{namespace="default",pod="web"} 150 ' in text
    assert "node_cpu_usage_seconds_total 12.500000000 1700000000500\n" in text
    assert "node_memory_working_set_bytes 2048 1700000000500\n" in text
    assert text.endswith("resource_scrape_error 0\n")


# --- a real container ---------------------------------------------------------------


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "real-container metrics need root"
    if shutil.which("runc") is None:
        return "real-container metrics need runc (apt-get install runc)"
    if not os.path.exists(testimage.BUSYBOX):
        return "real-container metrics need busybox-static (apt-get install busybox-static)"
    if not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        return "real-container metrics need the cgroup v1 cpuacct controller"
    return None


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[OCIRuntime, Path]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    image = testimage.build_busybox_rootfs(tmp_path / "busybox")
    network = CNI(
        NetworkConfig(
            subnet="10.198.0.0/24",
            name="nkmetrics",
            bridge="nkm0",
            conf_dir=str(tmp_path / "cni-conf"),
            data_dir=str(tmp_path / "cni"),
        )
    )
    paths = Paths(
        state_dir=str(tmp_path / "run"),
        data_dir=str(tmp_path / "data"),
        log_dir=str(tmp_path / "logs"),
        cgroup_root=f"/nanokube-metrics-test-{os.getpid()}",
    )
    rt = OCIRuntime(network, paths)
    try:
        yield rt, image
    finally:
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        with open("/proc/self/mountinfo") as f:
            targets = [line.split()[4] for line in f]
        for target in sorted(
            (t for t in targets if t.startswith(str(tmp_path))), key=len, reverse=True
        ):
            linux.umount(target)
        cgroups.remove(paths.cgroup_root)


async def test_busy_container_is_measured(runtime: tuple[OCIRuntime, Path]) -> None:
    rt, image = runtime
    sandbox = await rt.create_sandbox(
        contract.SandboxConfig(uid="uid-busy", name="busy", namespace="default", host_network=True)
    )
    config = contract.ContainerConfig(
        name="spin",
        layers=[str(image)],
        command=[
            "/bin/sh",
            "-c",
            "x=$(head -c 4000000 /dev/zero | tr '\\0' a); while :; do :; done",
        ],
    )
    cid = await rt.create_container(sandbox.id, config)
    await rt.start_container(cid)
    metrics = ResourceMetrics(rt, "n1")
    metrics.add(await metrics.collect())
    await asyncio.sleep(0.5)
    metrics.add(await metrics.collect())
    usage = metrics.pod_usage({"metadata": {"uid": "uid-busy"}})
    assert usage is not None and set(usage) == {"spin"}
    cpu, memory = usage["spin"]
    assert cpu > 100_000_000  # a spinning shell uses well over 0.1 core
    assert memory > 0
    node = metrics.node_usage({}, [])
    assert node is not None and node[0] > 0 and node[1] > 0
    text = render_prometheus(metrics.samples[-1])
    assert (
        'container_cpu_usage_seconds_total{container="spin",namespace="default",pod="busy"}' in text
    )
