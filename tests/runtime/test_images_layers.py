"""Layer unpacking: what each layer directory holds (modes, owners, links, devices,
xattrs, times), overlayfs whiteouts and opaque directories, and that the unpacked
layers stacked by the OCI runtime's own overlay mount show the image's final view.
Also: entries cannot escape their directory, diff ids and chain ids are right, zstd."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import imagebuild
import pytest

from nanokube.runtime.images import ContentError, layers
from nanokube.runtime.oci import linux

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="layer unpacking needs root (mknod, chown, trusted.* xattrs)"
)


def overlay_available() -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == "overlay" for line in f)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not os.path.exists(imagebuild.BUSYBOX):
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    base = tmp_path_factory.mktemp("layers")
    lower_tar, upper_tar = imagebuild.busybox_tars()
    lower, upper = base / "1", base / "2"
    lower.mkdir()
    upper.mkdir()
    r1 = layers.unpack(io.BytesIO(lower_tar), lower, [])
    r2 = layers.unpack(io.BytesIO(upper_tar), upper, [lower])
    assert r1.diff_id == imagebuild.digest(lower_tar)
    assert r2.diff_id == imagebuild.digest(upper_tar)
    assert r1.size > os.path.getsize(imagebuild.BUSYBOX)
    return lower, upper


def test_files_keep_mode_owner_time_and_xattrs(unpacked: tuple[Path, Path]) -> None:
    lower, _ = unpacked
    busybox = os.lstat(lower / "bin/busybox")
    assert stat.S_IMODE(busybox.st_mode) == 0o755 and busybox.st_mtime == imagebuild.MTIME
    assert stat.S_IMODE(os.lstat(lower / "bin/suid").st_mode) == 0o4755
    secret = os.lstat(lower / "home/user/secret")
    assert (secret.st_uid, secret.st_gid, stat.S_IMODE(secret.st_mode)) == (1000, 1000, 0o640)
    assert os.getxattr(lower / "home/user/secret", "user.test") == b"yes"
    home = os.lstat(lower / "home/user")
    assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (1000, 0o750)
    assert stat.S_IMODE(os.lstat(lower / "tmp").st_mode) == 0o1777
    # Directory times are set after their contents were written.
    assert os.lstat(lower / "etc").st_mtime == imagebuild.MTIME


def test_links_devices_and_fifos(unpacked: tuple[Path, Path]) -> None:
    lower, upper = unpacked
    assert os.readlink(lower / "bin/sh") == "/bin/busybox"
    assert os.lstat(lower / "etc/passwd.link").st_ino == os.lstat(lower / "etc/passwd").st_ino
    dev = os.lstat(lower / "dev/testnull")
    assert stat.S_ISCHR(dev.st_mode) and (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(lower / "run/fifo").st_mode)
    # A hardlink to a lower layer's file cannot cross layers: it is a copy.
    assert (upper / "etc/group.link").read_bytes() == (lower / "etc/group").read_bytes()


def test_whiteouts_become_overlayfs_whiteouts(unpacked: tuple[Path, Path]) -> None:
    _, upper = unpacked
    wh = os.lstat(upper / "etc/remove-me")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (upper / "etc/.wh.remove-me").exists()
    assert os.getxattr(upper / "opaque", layers.OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(upper / "opaque")) == ["new"]


@pytest.mark.skipif(not overlay_available(), reason="needs overlayfs in /proc/filesystems")
def test_stacked_layers_show_the_final_image(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    lower, upper = unpacked
    root = tmp_path / "rootfs"
    # The runtime's own mount: layers bottom first, as ContainerConfig.layers lists them.
    linux.mount_overlay(
        [str(lower), str(upper)], str(tmp_path / "u"), str(tmp_path / "w"), str(root)
    )
    try:
        assert not (root / "etc/remove-me").exists()
        assert sorted(os.listdir(root / "opaque")) == ["new"]
        assert (root / "etc/layer2").read_text() == "layer 2\n"
        assert (root / "etc/passwd").exists() and (root / "etc/group.link").exists()
        out = subprocess.run(
            ["chroot", str(root), "/bin/sh", "-c", "ls /etc; cat /opaque/new"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "remove-me" not in out and "layer2" in out and "new" in out
    finally:
        linux.umount(str(root))


def test_entries_cannot_escape_the_layer(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    t = imagebuild.TarBuilder()
    t.symlink("link", str(outside))
    t.file("link/evil", b"x")
    dest = tmp_path / "d1"
    dest.mkdir()
    with pytest.raises(ContentError, match="non-directory"):
        layers.unpack(io.BytesIO(t.done()), dest, [])
    assert not (outside / "evil").exists()

    t = imagebuild.TarBuilder()
    t.file("../evil", b"x")
    dest = tmp_path / "d2"
    dest.mkdir()
    with pytest.raises(ContentError, match="leaves the layer"):
        layers.unpack(io.BytesIO(t.done()), dest, [])
    assert not (tmp_path / "evil").exists()


def test_hardlinks_never_copy_host_files_through_a_lower_symlink(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    os.symlink("/etc", lower / "hostetc")
    t = imagebuild.TarBuilder()
    t.hardlink("stolen", "hostetc/passwd")
    dest = tmp_path / "upper"
    dest.mkdir()
    with pytest.raises(ContentError, match="points to missing"):
        layers.unpack(io.BytesIO(t.done()), dest, [lower])
    assert not (dest / "stolen").exists()


def test_later_entries_replace_earlier_ones_and_missing_parents_are_made(tmp_path: Path) -> None:
    t = imagebuild.TarBuilder()
    t.file("a/b/c", b"first")
    t.file("a/b/c", b"second")
    t.symlink("x", "a")
    t.dir("x")
    dest = tmp_path / "d"
    dest.mkdir()
    layers.unpack(io.BytesIO(t.done()), dest, [])
    assert (dest / "a/b/c").read_bytes() == b"second"
    assert (dest / "x").is_dir() and not (dest / "x").is_symlink()


def test_chain_ids() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    chain = layers.chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == imagebuild.digest(f"{a} {b}".encode())


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressed_blobs_decompress_by_magic(compression: str, tmp_path: Path) -> None:
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.skip("needs the zstd command (apt-get install zstd)")
    t = imagebuild.TarBuilder()
    t.file("hello", b"world")
    tar = t.done()
    image = imagebuild.build_image([tar], compression=compression)
    blob = tmp_path / "blob"
    blob.write_bytes(image.layers[0])
    dest = tmp_path / "d"
    dest.mkdir()
    with layers.decompressed(blob) as stream:
        result = layers.unpack(stream, dest, [])
    assert result.diff_id == imagebuild.digest(tar)
    assert (dest / "hello").read_bytes() == b"world"
