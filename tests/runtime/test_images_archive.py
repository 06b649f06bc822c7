"""Importing archives: ``docker save`` tarballs (with shared layers as symlinks and the
legacy ``repositories`` file), OCI image layouts (plain, nested index with a platform
choice), gzip-compressed archives, bad archives, and `import_dir` at agent start."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import imagebuild
import pytest

from nanokube.runtime.images import ArchiveError, ImageStore

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="image import needs root (mknod, chown, trusted.* xattrs)"
    ),
    pytest.mark.skipif(
        not os.path.exists(imagebuild.BUSYBOX),
        reason="needs busybox-static (apt-get install busybox-static)",
    ),
]


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def other_image() -> imagebuild.Image:
    """Shares busybox's bottom layer, has a different top layer and command."""
    t = imagebuild.TarBuilder()
    t.file("app", b"app\n", 0o755)
    return imagebuild.build_image([imagebuild.busybox_tars()[0], t.done()], cmd=["/app"])


def assert_busybox(store: ImageStore, ref: str) -> None:
    assert store.present(ref)
    dirs = store.layers_for(ref)
    assert len(dirs) == 2
    assert os.path.exists(os.path.join(dirs[0], "bin/busybox"))
    assert os.path.exists(os.path.join(dirs[1], "etc/layer2"))
    config = store.config_for(ref)
    assert config.cmd == ["sh"] and config.env == [imagebuild.PATH_ENV]


@pytest.mark.parametrize("compress", [False, True])
async def test_docker_save_archive(store: ImageStore, tmp_path: Path, compress: bool) -> None:
    bb, other = imagebuild.busybox_image(), other_image()
    archive = imagebuild.write_docker_archive(
        tmp_path / "images.tar",
        [(bb, ["busybox:latest", "busybox:1.35"]), (other, ["example.com/app:v1"])],
        compress,
    )
    images = await store.import_archive(archive)
    assert [im.repo_tags for im in images] == [
        ("docker.io/library/busybox:1.35", "docker.io/library/busybox:latest"),
        ("example.com/app:v1",),
    ]
    assert images[0].id == bb.config_digest
    assert_busybox(store, "busybox")
    assert store.get("busybox:1.35") == store.get("docker.io/library/busybox:latest")
    # The shared bottom layer (a symlink in the archive) is unpacked once.
    assert store.layers_for("example.com/app:v1")[0] == store.layers_for("busybox")[0]
    assert store.config_for("example.com/app:v1").cmd == ["/app"]
    assert len(os.listdir(store.layers_dir)) == 3


def rewrite(archive: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """Replace the content of member `name` of a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for member in src.getmembers():
            f = src.extractfile(member) if member.isfile() else None
            data = f.read() if f is not None else None
            if member.name == name and data is not None:
                data = change(data)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    archive.write_bytes(buf.getvalue())


async def test_docker_archive_without_repo_tags_uses_repositories(
    store: ImageStore, tmp_path: Path
) -> None:
    archive = imagebuild.write_docker_archive(
        tmp_path / "a.tar", [(imagebuild.busybox_image(), ["busybox:old"])]
    )

    def untag(data: bytes) -> bytes:
        entries = json.loads(data)
        entries[0]["RepoTags"] = None
        return json.dumps(entries).encode()

    rewrite(archive, "manifest.json", untag)
    [image] = await store.import_archive(archive)
    assert image.repo_tags == ("docker.io/library/busybox:old",)


@pytest.mark.parametrize("compress", [False, True])
async def test_oci_layout_archive(store: ImageStore, tmp_path: Path, compress: bool) -> None:
    bb = imagebuild.busybox_image(oci=True)
    archive = imagebuild.write_oci_archive(
        tmp_path / "bb.oci.tar", bb, "localhost:5000/tools/busybox:1", compress=compress
    )
    [image] = await store.import_archive(archive)
    assert image.repo_tags == ("localhost:5000/tools/busybox:1",)
    assert image.repo_digests == (f"localhost:5000/tools/busybox@{bb.digest}",)
    assert image.manifest == bb.digest
    assert_busybox(store, "localhost:5000/tools/busybox:1")
    assert store.get(f"localhost:5000/tools/busybox@{bb.digest}").id == image.id


async def test_oci_index_picks_the_host_platform(store: ImageStore, tmp_path: Path) -> None:
    amd64 = imagebuild.busybox_image(oci=True)
    arm64 = imagebuild.build_image(
        list(imagebuild.busybox_tars()), oci=True, arch="arm64", cmd=["arm"]
    )
    archive = imagebuild.write_oci_archive(
        tmp_path / "multi.tar", amd64, "multi:1", index_of=[(arm64, "arm64"), (amd64, "amd64")]
    )
    [image] = await store.import_archive(archive)
    assert image.id == amd64.config_digest
    assert store.config_for(image).cmd == ["sh"]


async def test_corrupt_blob_is_refused_and_nothing_is_recorded(
    store: ImageStore, tmp_path: Path
) -> None:
    bb = imagebuild.busybox_image(oci=True)
    archive = imagebuild.write_oci_archive(tmp_path / "bad.tar", bb, "bad:1")
    layer = "blobs/sha256/" + imagebuild.digest(bb.layers[1])[7:]
    rewrite(archive, layer, lambda _: gzip.compress(b"not what the digest says"))
    with pytest.raises(ArchiveError, match="has digest") as err:
        await store.import_archive(archive)
    assert str(err.value).startswith(f'failed to import image archive "{archive}": ')
    assert store.list_images() == []
    assert os.listdir(store.tmp) == []


async def test_not_an_image_archive(store: ImageStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        tar.addfile(tarfile.TarInfo("hello"), io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="neither a docker save archive"):
        await store.import_archive(junk)
    (tmp_path / "text.tar").write_text("hello")
    with pytest.raises(ArchiveError, match="not a tar archive"):
        await store.import_archive(tmp_path / "text.tar")
    good = imagebuild.write_docker_archive(
        tmp_path / "cut.tar.gz", [(imagebuild.busybox_image(), ["x:1"])], compress=True
    )
    good.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ArchiveError, match="not a tar archive"):
        await store.import_archive(good)


async def test_import_dir_imports_new_archives_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "agent" / "images"
    root.mkdir(parents=True)
    imagebuild.write_docker_archive(
        root / "busybox.tar", [(imagebuild.busybox_image(), ["busybox:latest"])]
    )
    imagebuild.write_oci_archive(
        root / "app.tar.gz", other_image(), "example.com/app:v1", compress=True
    )
    (root / "broken.tar").write_text("not a tar")
    (root / "notes.txt").write_text("ignored")
    store = ImageStore(root)
    with caplog.at_level(logging.ERROR):
        images = await store.import_dir()
    assert sorted(im.ref for im in images) == [
        "docker.io/library/busybox:latest",
        "example.com/app:v1",
    ]
    assert "broken.tar" in caplog.text
    # A restarted agent skips what it already imported.
    assert await ImageStore(root).import_dir() == []
    # A replaced archive is imported again.
    imagebuild.write_docker_archive(
        root / "busybox.tar", [(imagebuild.busybox_image(), ["busybox:again"])]
    )
    [again] = await store.import_dir()
    assert "docker.io/library/busybox:again" in again.repo_tags
