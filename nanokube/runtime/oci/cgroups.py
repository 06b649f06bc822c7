"""cgroup v1 reading and cleanup for containers and pods.

The machines nanokube targets run cgroups v1 (hybrid): one hierarchy per controller
under ``/sys/fs/cgroup/<controller>``. runc creates ``<controller>/<cgroupsPath>`` for
each container and removes it on ``runc delete``; the pod level directories it creates
on the way (``/nanokube/pod<UID>``) are ours to remove with the sandbox.
"""

from __future__ import annotations

import logging
import os
import time

from nanokube.runtime.contract import ContainerStats

log = logging.getLogger(__name__)

ROOT = "/sys/fs/cgroup"


def controller_path(controller: str, cgroup: str) -> str:
    return os.path.join(ROOT, controller, cgroup.lstrip("/"))


def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def stats(cgroup: str) -> ContainerStats:
    """CPU time and memory of a container's cgroup; raises OSError when it is gone."""
    cpu = _read_int(os.path.join(controller_path("cpuacct", cgroup), "cpuacct.usage"))
    memory = controller_path("memory", cgroup)
    usage = _read_int(os.path.join(memory, "memory.usage_in_bytes"))
    inactive_file = 0
    with open(os.path.join(memory, "memory.stat")) as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == "total_inactive_file":
                inactive_file = int(value)
                break
    return ContainerStats(
        timestamp=time.time(),
        cpu_usage_ns=cpu,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive_file),
    )


def oom_control(cgroup: str) -> str:
    return os.path.join(controller_path("memory", cgroup), "memory.oom_control")


def remove(cgroup: str) -> None:
    """rmdir the cgroup (and any empty child left behind) in every hierarchy."""
    if not os.path.isdir(ROOT):
        return
    for controller in os.listdir(ROOT):
        path = controller_path(controller, cgroup)
        if not os.path.isdir(path):
            continue
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cgroup not removed path=%s error=%s", dirpath, e)
