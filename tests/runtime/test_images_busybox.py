"""`nanokube.runtime.images.busybox`: the archive imports into the store under its tag,
holds one layer with busybox and its applets, is the same bytes each time, and its
``python -m`` entry point writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from nanokube.runtime.images import ImageStore
from nanokube.runtime.images.busybox import write_busybox_archive

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(os.geteuid() != 0, reason="image import needs root (chown)"),
]


async def test_archive_imports_with_its_tag(tmp_path: Path) -> None:
    archive = write_busybox_archive(tmp_path / "in" / "bb.tar", "busybox:e2e")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["busybox:e2e"] and len(manifest[0]["Layers"]) == 1
        layer = tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0]))
        names = set(layer.getnames())
    assert {"bin/busybox", "bin/sh", "bin/tar", "usr/sbin/httpd", "etc/passwd"} <= names
    assert ".nanokube-complete" not in names
    store = ImageStore(tmp_path / "images")
    try:
        [image] = await store.import_archive(archive)
        assert image.repo_tags == ("docker.io/library/busybox:e2e",)
    finally:
        await store.close()


def test_same_bytes_each_time_and_module_entry_point(tmp_path: Path) -> None:
    first = write_busybox_archive(tmp_path / "a.tar").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "nanokube.runtime.images.busybox", str(tmp_path / "b.tar")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "b.tar")
    assert (tmp_path / "b.tar").read_bytes() == first
