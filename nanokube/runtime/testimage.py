"""A busybox root filesystem built from Debian's ``busybox-static``, for tests and demos.

The real image store (pull, import, unpacked layers) is separate work; until it exists
this module stands in for it with the narrowest possible interface: one directory that
serves as the single overlayfs lower layer, plus an `ImageConfig` like the one an image
store would read from an OCI image config.

The layout is what a ``busybox`` image has: ``/bin/busybox`` and one symlink per applet
(``busybox --list-full``), a minimal ``/etc/passwd`` and ``/etc/group`` (root, nobody),
and the usual empty mount points.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from nanokube.runtime.contract import ImageConfig

log = logging.getLogger(__name__)

BUSYBOX = "/bin/busybox"
"""Where Debian's busybox-static installs the statically linked binary."""

IMAGE_CONFIG = ImageConfig(
    entrypoint=[],
    cmd=["sh"],
    env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    working_dir="/",
    user="",
)
"""The config of the stand-in image (what ``docker inspect busybox`` shows)."""

COMPLETE_MARKER = ".nanokube-complete"
"""Marks a finished tree (not part of the image: `images.busybox` leaves it out)."""

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_DIRS = (
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc",
    "tmp",
    "proc",
    "sys",
    "dev",
    "root",
    "home",
    "var",
    "run",
)


def build_busybox_rootfs(dest: str | os.PathLike[str], busybox: str = BUSYBOX) -> Path:
    """Build (once) a busybox root filesystem at `dest` and return its path.

    Idempotent: a finished tree is marked by `COMPLETE_MARKER` and reused, so test
    sessions pay the ~10 ms build only once. Raises `FileNotFoundError` when busybox-static
    is not installed.
    """
    root = Path(dest)
    marker = root / COMPLETE_MARKER
    if marker.exists():
        return root
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: apt-get install busybox-static")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in _DIRS:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    os.chmod(tmp / "tmp", 0o1777)
    shutil.copy2(busybox, tmp / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = tmp / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (tmp / "etc" / "passwd").write_text(_PASSWD)
    (tmp / "etc" / "group").write_text(_GROUP)
    (tmp / COMPLETE_MARKER).touch()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    log.info("built busybox rootfs path=%s applets=%d", root, len(applets))
    return root
