"""Build a container's OCI runtime ``config.json`` from a `ContainerConfig`.

Defaults follow what containerd gives a Kubernetes container: its default capability
set, runc's spec defaults for masked and read-only ``/proc`` paths, the standard
``/proc``, ``/dev``, ``/sys`` mounts. Namespaces: a private PID and mount namespace
per container; network, IPC and UTS namespaces are the sandbox's pinned ones, joined
by path (host network and UTS for ``hostNetwork`` pods).

Machine facts this encodes (see MACHINE-NOTES): cgroups are v1, so limits go in
``linux.resources`` as memory/cpu/pids values; ``linux.cgroupsPath`` is absolute so
runc does not nest the container under the agent's own cgroup; rlimits never exceed the
host's hard limit (runc cannot raise it and fails the create otherwise).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any

from nanokube.runtime.contract import ContainerConfig
from nanokube.runtime.oci import seccomp

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
"""containerd's default set (``oci.defaultUnixCaps``)."""

ALL_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOFILE_WANTED = 1_048_576


@dataclass
class SandboxView:
    """What a container needs to know of its sandbox."""

    namespaces: dict[str, str]
    """``net``/``ipc``/``uts`` -> pinned path; a kind absent means the host's."""
    hostname: str
    etc_files: dict[str, str]
    """Container path (``/etc/hosts`` ...) -> host file."""
    shm: str
    """The pod's shared ``/dev/shm`` directory; empty gives the container its own."""
    cgroup_parent: str


def capabilities(config: ContainerConfig) -> list[str]:
    """The effective capability set: default (or all when privileged), + add, - drop."""
    sec = config.security
    if sec.privileged:
        return list(ALL_CAPABILITIES)
    names = [_cap(c) for c in sec.capabilities_add]
    caps = list(ALL_CAPABILITIES) if "CAP_ALL" in names else list(DEFAULT_CAPABILITIES)
    caps += [c for c in names if c != "CAP_ALL" and c not in caps]
    dropped = {_cap(c) for c in sec.capabilities_drop}
    if "CAP_ALL" in dropped:
        return [c for c in caps if c in names]
    return [c for c in caps if c not in dropped]


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def _rlimit(kind: int, wanted: int) -> int:
    _, hard = resource.getrlimit(kind)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def resolve_user(config: ContainerConfig, rootfs: str) -> tuple[int, int]:
    """uid/gid: securityContext first, then the image's ``USER`` looked up in the
    container's ``/etc/passwd`` (names) or taken as numbers."""
    sec = config.security
    uid, gid = 0, 0
    user, _, group = config.user.partition(":")
    if user:
        uid, gid = _lookup(rootfs, "passwd", user)
    if group:
        gid = _lookup(rootfs, "group", group)[0]
    if sec.run_as_user is not None:
        uid = sec.run_as_user
        if not group:
            gid = _lookup(rootfs, "passwd", str(uid))[1]
    if sec.run_as_group is not None:
        gid = sec.run_as_group
    return uid, gid


def _lookup(rootfs: str, db: str, name: str) -> tuple[int, int]:
    """(id, primary gid) from ``/etc/passwd`` or (gid, gid) from ``/etc/group``."""
    if name.isdigit():
        number = int(name)
        try:
            with open(os.path.join(rootfs, "etc", db)) as f:
                for line in f:
                    fields = line.strip().split(":")
                    if db == "passwd" and len(fields) > 3 and fields[2] == name:
                        return number, int(fields[3])
        except OSError:
            pass
        return number, 0 if db == "passwd" else number
    try:
        with open(os.path.join(rootfs, "etc", db)) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) > 3 and fields[0] == name:
                    return int(fields[2]), int(fields[3] if db == "passwd" else fields[2])
    except OSError:
        pass
    raise ValueError(f"unable to find {'user' if db == 'passwd' else 'group'} {name}")


def build_spec(
    config: ContainerConfig, sandbox: SandboxView, rootfs: str, cgroups_path: str
) -> dict[str, Any]:
    sec = config.security
    caps = capabilities(config)
    uid, gid = resolve_user(config, rootfs)
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": sandbox.hostname}
    if config.tty:
        env["TERM"] = "xterm"
    env.update(config.env)
    nofile = _rlimit(resource.RLIMIT_NOFILE, NOFILE_WANTED)
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": list(sec.supplemental_groups)},
        "args": config.command,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": config.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": sec.no_new_privs and not sec.privileged,
    }
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "mount"}]
    for kind, oci_kind in (("net", "network"), ("ipc", "ipc"), ("uts", "uts")):
        if kind in sandbox.namespaces:
            namespaces.append({"type": oci_kind, "path": sandbox.namespaces[kind]})
    linux: dict[str, Any] = {
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces,
        "resources": _resources(config),
        "rootfsPropagation": "rprivate",
    }
    if not sec.privileged:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
        if sec.seccomp == "RuntimeDefault":
            linux["seccomp"] = seccomp.runtime_default(caps)
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": sec.read_only_root_filesystem},
        "mounts": _mounts(config, sandbox),
        "linux": linux,
    }


def _resources(config: ContainerConfig) -> dict[str, Any]:
    res = config.resources
    out: dict[str, Any] = {"devices": [{"allow": config.security.privileged, "access": "rwm"}]}
    cpu: dict[str, Any] = {}
    if res.cpu_shares is not None:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota is not None:
        cpu["quota"] = res.cpu_quota
        cpu["period"] = res.cpu_period
    if cpu:
        out["cpu"] = cpu
    if res.memory_limit is not None:
        out["memory"] = {"limit": res.memory_limit, "swap": res.memory_limit}
    if res.pids_limit is not None:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _mounts(config: ContainerConfig, sandbox: SandboxView) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if config.security.privileged else ["ro"])
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    if sandbox.shm:
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": sandbox.shm,
                "options": ["rbind", "rprivate", "rw"],
            }
        )
    else:
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            }
        )
    taken = {m.container_path for m in config.mounts}
    for dest, src in sandbox.etc_files.items():
        if dest not in taken:
            mounts.append(
                {
                    "destination": dest,
                    "type": "bind",
                    "source": src,
                    "options": ["rbind", "rprivate", "rw"],
                }
            )
    for m in config.mounts:
        mounts.append(
            {
                "destination": m.container_path,
                "type": "bind",
                "source": m.host_path,
                "options": ["rbind", m.propagation, "ro" if m.readonly else "rw"],
            }
        )
    return mounts
