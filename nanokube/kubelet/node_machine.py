"""What the node agent reads about its machine: capacity, identity, and pressure signals.

Sources are the ones upstream's kubelet (through cAdvisor) uses: CPU count
and `/proc/meminfo` for capacity, `statvfs` of the data directory for
`ephemeral-storage`, `/etc/os-release`, `uname`, `/etc/machine-id` and the
boot id for `nodeInfo`. Allocatable is capacity minus the default hard
eviction thresholds (memory.available 100Mi, nodefs.available 10%), since no
resources are reserved for system daemons by default.

The pressure signals are measured as the eviction manager measures them:
`memory.available` = MemAvailable, `nodefs.available` from `statvfs`,
`pid.available` = `kernel.pid_max` minus the processes now running.
Functions take their file paths as arguments so tests can point them at
fixtures; nothing here talks to the API.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

MEMORY_AVAILABLE_THRESHOLD = 100 * 1024 * 1024  # upstream's memory.available<100Mi
NODEFS_AVAILABLE_RATIO = 0.10  # nodefs.available<10%
PID_AVAILABLE_RATIO = 0.10  # pid.available<10% (upstream sets no default; a safe floor)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def architecture() -> str:
    """GOARCH of this machine, as the Node's `kubernetes.io/arch` label says it."""
    machine = platform.machine()
    return _ARCH.get(machine, machine.lower())


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """`/proc/meminfo` in bytes."""
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def os_image(path: str = "/etc/os-release") -> str:
    """`PRETTY_NAME` of os-release ("Debian GNU/Linux 12 (bookworm)")."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def machine_id() -> str:
    return _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")


def system_uuid() -> str:
    return _read("/sys/class/dmi/id/product_uuid") or machine_id()


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def filesystem(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(capacity, available to unprivileged users) in bytes of the filesystem of `path`."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def pid_limits(proc: str = "/proc") -> tuple[int, int]:
    """(pid_max, processes running now)."""
    pid_max = int(_read(f"{proc}/sys/kernel/pid_max", "32768"))
    running = sum(1 for name in os.listdir(proc) if name.isdigit())
    return pid_max, running


@dataclass
class Capacity:
    cpu: int
    memory: int
    ephemeral_storage: int
    pods: int = 110

    def capacity(self) -> dict[str, str]:
        return {
            "cpu": str(self.cpu),
            "memory": f"{self.memory // 1024}Ki",
            "ephemeral-storage": f"{self.ephemeral_storage // 1024}Ki",
            "pods": str(self.pods),
            "hugepages-2Mi": "0",
            "hugepages-1Gi": "0",
        }

    def allocatable(self) -> dict[str, str]:
        """Capacity minus the hard eviction thresholds (upstream's default reservation)."""
        memory = max(self.memory - MEMORY_AVAILABLE_THRESHOLD, 0)
        storage = int(self.ephemeral_storage * (1 - NODEFS_AVAILABLE_RATIO))
        return {
            **self.capacity(),
            "memory": f"{memory // 1024}Ki",
            "ephemeral-storage": str(storage),
        }


def capacity(data_dir: str | os.PathLike[str], max_pods: int = 110) -> Capacity:
    storage, _ = filesystem(data_dir)
    return Capacity(
        cpu=os.cpu_count() or 1,
        memory=meminfo().get("MemTotal", 0),
        ephemeral_storage=storage,
        pods=max_pods,
    )


@dataclass
class Pressure:
    """Which eviction signals are past their thresholds now."""

    memory: bool = False
    disk: bool = False
    pid: bool = False


def pressure(data_dir: str | os.PathLike[str]) -> Pressure:
    memory = meminfo()
    total, available = filesystem(data_dir)
    pid_max, running = pid_limits()
    return Pressure(
        memory=memory.get("MemAvailable", memory.get("MemFree", 0)) < MEMORY_AVAILABLE_THRESHOLD,
        disk=total > 0 and available < total * NODEFS_AVAILABLE_RATIO,
        pid=pid_max - running < pid_max * PID_AVAILABLE_RATIO,
    )


def internal_ip(server_url: str = "") -> str:
    """The address this machine reaches the API server from, else its default-route address.

    A loopback answer (the server on this machine) falls through to the default
    route, so other nodes get an address they can route pods to; with no route
    at all it is 127.0.0.1.
    """
    candidates = []
    host = urlparse(server_url).hostname if server_url else None
    if host:
        candidates.append(host)
    candidates.append("192.0.2.1")  # TEST-NET-1: only the route is looked up, nothing sent
    for target in candidates:
        try:
            family = socket.AF_INET6 if ":" in target else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                address = str(s.getsockname()[0])
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return "127.0.0.1"


def hostname() -> str:
    """The node name upstream defaults to: the hostname, lower-cased."""
    return socket.gethostname().lower()
