"""The busybox stand-in image: layout and idempotent rebuild."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nanokube.runtime import testimage


def test_builds_busybox_rootfs_once(tmp_path: Path):
    if not os.path.exists(testimage.BUSYBOX):
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    root = testimage.build_busybox_rootfs(tmp_path / "bb")
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert os.access(root / "bin" / "busybox", os.X_OK)
    assert "nobody:x:65534" in (root / "etc" / "passwd").read_text()
    assert (root / "tmp").stat().st_mode & 0o1777 == 0o1777
    mtime = (root / ".nanokube-complete").stat().st_mtime_ns
    assert testimage.build_busybox_rootfs(tmp_path / "bb") == root
    assert (root / ".nanokube-complete").stat().st_mtime_ns == mtime


def test_missing_busybox_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="busybox-static"):
        testimage.build_busybox_rootfs(tmp_path / "bb", busybox=str(tmp_path / "nope"))
