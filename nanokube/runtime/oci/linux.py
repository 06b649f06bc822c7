"""Linux mechanics of a sandbox and a rootfs: pinned namespaces and mounts.

A pod's shared namespaces are pinned without a pause process: a short-lived
``unshare`` creates them and bind-mounts its ``/proc/PID/ns/{net,ipc,uts}`` onto files
(util-linux's ``--net=FILE`` form), then sets the pod's hostname in the new UTS
namespace and exits. The bind mounts keep the namespaces alive; containers join them
by path in their OCI config. Removing the sandbox unmounts the pins, which destroys
the namespaces once no process uses them.

mount(2)/umount2(2) are called through ctypes: one syscall instead of forking
``mount`` keeps a pod start a few milliseconds shorter per mount.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} {source} on {target}: {os.strerror(err)}")


def umount(target: str) -> bool:
    """Lazily unmount `target`; False when it was not mounted (or does not exist)."""
    if _libc.umount2(target.encode(), MNT_DETACH) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mountpoint(path: str) -> bool:
    """From the mount table: `os.path.ismount` misses a bind mount of a directory onto
    itself (same device, and the inode is not the root's)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            target = line.split(b" ", 5)[4]
            if target.decode("unicode_escape") == path:
                return True
    return False


def ensure_shared_dir(path: str) -> None:
    """Make `path` a shared mount of itself, as ``ip netns`` does for ``/run/netns``:
    unmounting a pin then propagates into mount namespaces created meanwhile, so no
    stale copy keeps a namespace alive."""
    os.makedirs(path, exist_ok=True)
    if is_mountpoint(path):
        return
    mount(path, path, "none", MS_BIND)
    mount("none", path, "none", MS_SHARED)


async def pin_namespaces(pin_dir: str, kinds: list[str], hostname: str) -> dict[str, str]:
    """Create new namespaces of `kinds` (``net``, ``ipc``, ``uts``), pinned by bind mounts
    at ``pin_dir/<kind>``; sets `hostname` when ``uts`` is among them."""
    os.makedirs(pin_dir, exist_ok=True)
    paths = {kind: os.path.join(pin_dir, kind) for kind in kinds}
    for path in paths.values():
        Path(path).touch()
    argv = ["unshare", *(f"--{kind}={path}" for kind, path in paths.items())]
    argv += ["hostname", hostname] if "uts" in kinds else ["true"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        unpin_namespaces(pin_dir)
        raise OSError(f"pinning namespaces failed: {err.decode(errors='replace').strip()}")
    return paths


def unpin_namespaces(pin_dir: str) -> None:
    """Unmount and delete every pin in `pin_dir`; idempotent."""
    if not os.path.isdir(pin_dir):
        return
    for name in os.listdir(pin_dir):
        path = os.path.join(pin_dir, name)
        umount(path)
        os.unlink(path)
    os.rmdir(pin_dir)


def mount_overlay(lowerdirs: list[str], upper: str, work: str, target: str) -> None:
    """Stack `lowerdirs` (bottom layer first) under a writable `upper` at `target`."""
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    os.makedirs(target, exist_ok=True)
    lower = ":".join(reversed(lowerdirs))  # overlayfs wants the topmost layer first
    mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def mount_tmpfs(target: str, size: int, mode: int = 0o1777) -> None:
    os.makedirs(target, exist_ok=True)
    mount("shm", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode={mode:o},size={size}")
