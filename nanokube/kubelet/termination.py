"""Termination messages: what ``state.terminated.message`` shows after a container exits.

As upstream: each container instance gets an empty host file bind-mounted at its
``terminationMessagePath`` (default ``/dev/termination-log``), under
``ROOT/pods/UID/containers/NAME/ATTEMPT``; after the exit the kubelet reads at most
4 KiB of it. With ``terminationMessagePolicy: FallbackToLogsOnError`` an empty file
and a non-zero exit fall back to the last 80 lines (at most 2 KiB) of the log.

Disabled when the kubelet has no root directory (``KubeletConfig.root_dir`` empty).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from nanokube.runtime.contract import ContainerStatus, Mount

Obj = dict[str, Any]
DEFAULT_PATH = "/dev/termination-log"
MAX_MESSAGE = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


def _file(root: str, uid: str, name: str, attempt: int) -> str:
    return os.path.join(root, "pods", uid, "containers", name, str(attempt))


def prepare(root: str, uid: str, container: Obj, attempt: int) -> Mount | None:
    """Create the instance's message file; the mount for it (None when disabled)."""
    if not root:
        return None
    path = _file(root, uid, container["name"], attempt)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w"):
        pass
    os.chmod(path, 0o666)  # any container user may write it
    return Mount(
        host_path=path, container_path=container.get("terminationMessagePath") or DEFAULT_PATH
    )


def _log_tail(log_path: str) -> str:
    """The last lines of a CRI-format log (``TIME STREAM TAG MESSAGE``), messages only."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            raw = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    lines = [line.split(" ", 3)[3] if line.count(" ") >= 3 else "" for line in raw]
    text = "\n".join(lines[-FALLBACK_LINES:])
    return text[-FALLBACK_BYTES:]


def read(root: str, uid: str, container: Obj, status: ContainerStatus) -> str:
    """The message of an exited instance ("" when there is none)."""
    message = ""
    if root:
        try:
            with open(_file(root, uid, status.name, status.attempt), "rb") as f:
                message = f.read(MAX_MESSAGE).decode("utf-8", "replace")
        except OSError:
            pass
    fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    if not message and fallback and status.exit_code not in (0, None) and status.log_path:
        message = _log_tail(status.log_path)
    return message


def remove_pod(root: str, uid: str) -> None:
    if root and uid:
        shutil.rmtree(os.path.join(root, "pods", uid), ignore_errors=True)
