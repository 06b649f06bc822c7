"""Fixtures for real-container tests: a busybox image, a test pod network, a runtime.

Everything lives under the test's temporary directory, a bridge (``nkt0``) and subnet
(10.199.0.0/24) of its own, and the cgroup root ``/nanokube-test-PID``, so the tests
never touch a running agent. Teardown removes every sandbox (which releases IPs,
unpins namespaces, deletes veths and cgroups) and then sweeps any mount left below the
temporary directory, whether the test passed or not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nanokube.network.cni import CNI, NetworkConfig
from nanokube.runtime import testimage
from nanokube.runtime.oci import cgroups, linux
from nanokube.runtime.oci.runtime import OCIRuntime, Paths

BRIDGE = "nkt0"
SUBNET = "10.199.0.0/24"


def missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "runtime tests need root"
    if shutil.which("runc") is None:
        return "runtime tests need runc (apt-get install runc)"
    if not os.path.exists(testimage.BUSYBOX):
        return "runtime tests need busybox-static (apt-get install busybox-static)"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "runtime tests need CNI plugins (apt-get install containernetworking-plugins)"
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        return "runtime tests need cgroup v1 memory controller at /sys/fs/cgroup/memory"
    return None


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    return testimage.build_busybox_rootfs(tmp_path_factory.mktemp("image") / "busybox")


@pytest.fixture(scope="session")
def bridge() -> Iterator[str]:
    yield BRIDGE
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def make_runtime(base: Path) -> OCIRuntime:
    network = CNI(
        NetworkConfig(
            subnet=SUBNET,
            name="nktest",
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
        cgroup_root=f"/nanokube-test-{os.getpid()}",
    )
    return OCIRuntime(network, paths)


@pytest.fixture
def new_runtime(tmp_path: Path) -> Callable[[], OCIRuntime]:
    """Build another runtime over the same directories: what a restarted agent does."""
    return lambda: make_runtime(tmp_path)


@pytest.fixture
async def runtime(busybox: Path, bridge: str, tmp_path: Path) -> AsyncIterator[OCIRuntime]:
    rt = make_runtime(tmp_path)
    try:
        yield rt
    finally:
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        _sweep_mounts(str(tmp_path))
        cgroups.remove(rt.paths.cgroup_root)


def _sweep_mounts(prefix: str) -> None:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        linux.umount(target)
