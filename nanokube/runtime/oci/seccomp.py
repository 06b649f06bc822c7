"""The ``RuntimeDefault`` seccomp profile.

containerd's and Docker's default profile is a ~350-entry allowlist; this one is the
complement that matters: allow everything except the system calls that profile never
allows a default container (kernel modules, kexec, reboot, clock setting, keyrings,
BPF, perf, userfaultfd, obsolete calls), and except those it only allows together with
a capability (``mount``/``unshare``/``setns`` with CAP_SYS_ADMIN, ``ptrace`` with
CAP_SYS_PTRACE, ...). A denied call fails with EPERM, as with Docker's profile.

A denylist is shorter to read and keeps working for new, harmless system calls; the
cost is that a new *dangerous* system call would be allowed until listed here.
Names unknown to the host's libseccomp are ignored by runc.
"""

from __future__ import annotations

from typing import Any

EPERM = 1

ALWAYS_DENIED = [
    "add_key",
    "keyctl",
    "request_key",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "kexec_load",
    "kexec_file_load",
    "lookup_dcookie",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "userfaultfd",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
]

DENIED_WITHOUT_CAPABILITY = {
    "CAP_SYS_ADMIN": [
        "mount",
        "umount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "swapon",
        "swapoff",
        "quotactl",
        "bpf",
        "perf_event_open",
        "fanotify_init",
        "lookup_dcookie",
        "mbind",
        "set_mempolicy",
        "get_mempolicy",
        "move_pages",
    ],
    "CAP_SYS_PTRACE": ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    "CAP_SYS_MODULE": ["init_module", "finit_module", "delete_module"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at", "name_to_handle_at"],
}


def runtime_default(capabilities: list[str]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section for a container holding `capabilities`."""
    denied = list(ALWAYS_DENIED)
    for cap, calls in DENIED_WITHOUT_CAPABILITY.items():
        if cap not in capabilities:
            denied.extend(c for c in calls if c not in denied)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}],
    }
