"""Unpacking one layer tarball into a directory that overlayfs can stack.

Each layer is unpacked on its own into ``layers/<chain id>/`` and the container's rootfs
is an overlay mount with those directories as lowerdirs, so a layer's deletions must be
written the way overlayfs reads them (as containerd's overlay snapshotter does):

- ``.wh.NAME`` (NAME deleted) becomes a character device 0/0 named NAME
- ``.wh..wh..opq`` (directory replaced) becomes the ``trusted.overlay.opaque=y`` xattr
  on its directory

Everything else keeps what the tar entry says: mode (setuid bits included), owner,
mtime, extended attributes (PAX ``SCHILY.xattr.*``), symlinks, hardlinks, device
nodes and FIFOs. Entries never escape the layer directory: ``..`` components are
refused and no entry is written through a symlink. A hardlink to a file of a lower
layer (legal in OCI, rare) becomes a copy, since a hard link cannot cross layers.

Unpacking is synchronous; the store runs it in a thread. It hashes the uncompressed
stream on the way, so the layer's diff id is checked without a second read.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from nanokube.runtime.images.errors import ContentError

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_XATTR_PREFIX = "SCHILY.xattr."


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain ids: the first is the diff id, each next one hashes ``parent + ' ' +
    diff id``; a chain id names a layer together with everything below it."""
    chain: list[str] = []
    for diff in diff_ids:
        if chain:
            diff = "sha256:" + hashlib.sha256(f"{chain[-1]} {diff}".encode()).hexdigest()
        chain.append(diff)
    return chain


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


@contextmanager
def decompressed(path: Path) -> Iterator[IO[bytes]]:
    """`path` as an uncompressed stream, whatever it is compressed with (the magic
    bytes decide, not the media type: ``docker save`` layers have none). zstd goes
    through the ``zstd`` command (Debian's ``zstd`` package), as Python 3.11 has no
    zstd module."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(_GZIP):
        with gzip.open(path, "rb") as g:
            yield g  # type: ignore[misc]
    elif magic == _ZSTD:
        if shutil.which("zstd") is None:
            raise ContentError("layer is zstd-compressed and the zstd command is missing")
        with open(path, "rb") as f:
            proc = subprocess.Popen(["zstd", "-dcq"], stdin=f, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            yield proc.stdout
            proc.stdout.read()
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0:
            raise ContentError(f"zstd failed to decompress {path.name} (exit {rc})")
    else:
        with open(path, "rb") as f:
            yield f


@dataclass
class Unpacked:
    diff_id: str
    size: int
    """Bytes of regular file content, what the layer takes on disk (roughly)."""


def unpack(stream: BinaryIO | IO[bytes], dest: Path, lower: list[Path]) -> Unpacked:
    """Unpack the uncompressed layer tar `stream` into the empty directory `dest`.
    `lower` are the unpacked layers below it, nearest first (for cross-layer hardlinks)."""
    hashing = _Hashing(stream)
    size = 0
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    try:
        with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                size += _apply(tar, member, dest, lower, dirs)
        hashing.drain()  # the end-of-archive padding counts towards the diff id
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ContentError(f"bad layer tar: {e or type(e).__name__}") from None
    # Directory times last: creating their entries changed them.
    for path, member in reversed(dirs):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    return Unpacked("sha256:" + hashing.hash.hexdigest(), size)


def _clean(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ContentError(f"layer entry {name!r} leaves the layer")
    return "/".join(parts)


def _parent(dest: Path, rel: str) -> Path:
    """The entry's parent directory, created if the tar omitted it; refuses to go
    through a symlink, which could point anywhere on the host."""
    path = dest
    for part in rel.split("/")[:-1]:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ContentError(f"layer entry {rel!r} goes through a non-directory {part!r}")
    return path


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _apply(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    lower: list[Path],
    dirs: list[tuple[Path, tarfile.TarInfo]],
) -> int:
    rel = _clean(member.name)
    if not rel:  # the layer's own root directory
        _attrs(dest, member)
        dirs.append((dest, member))
        return 0
    parent = _parent(dest, rel)
    base = rel.rsplit("/", 1)[-1]
    if base == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return 0
    if base.startswith(WHITEOUT):
        target = parent / base[len(WHITEOUT) :]
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return 0
    path = parent / base
    if member.isdir():
        if not path.is_dir() or path.is_symlink():
            _remove(path)
            os.mkdir(path, 0o700)
        _attrs(path, member)
        dirs.append((path, member))
        return 0
    _remove(path)
    if member.isfile():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        _attrs(path, member)
        return member.size
    if member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        _hardlink(dest, lower, _clean(member.linkname), path)
        return 0  # the link shares its target's inode and attributes
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        log.debug("skipping layer entry name=%s type=%r", rel, member.type)
        return 0
    _attrs(path, member)
    return 0


def _hardlink(dest: Path, lower: list[Path], target: str, path: Path) -> None:
    if not target:
        raise ContentError("hardlink to the layer root")
    here = dest / target
    if os.path.lexists(here):
        _parent(dest, target)  # refuse targets reached through a symlink
        os.link(here, path, follow_symlinks=False)
        return
    for layer in lower:
        candidate = _within(layer, target)
        if candidate is not None:
            shutil.copy2(candidate, path, follow_symlinks=False)
            st = os.lstat(candidate)
            os.lchown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            return
    raise ContentError(f"hardlink {path.name!r} points to missing {target!r}")


def _within(layer: Path, rel: str) -> Path | None:
    """`rel` in `layer` if it exists there, reached through real directories only (a
    symlink on the way could lead to any file of the host)."""
    path = layer
    parts = rel.split("/")
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None
    return path


def _attrs(path: Path, member: tarfile.TarInfo) -> None:
    """Owner, then mode (chown clears setuid bits), xattrs, mtime."""
    symlink = member.issym()
    try:
        os.lchown(path, member.uid, member.gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise
    if not symlink:
        os.chmod(path, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_PREFIX):
            name = key[len(_XATTR_PREFIX) :]
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, raw, follow_symlinks=False)
            except OSError as e:
                # A filesystem without that namespace (or user.* on a symlink): the
                # file is still usable; only the attribute is lost.
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise
                log.debug("xattr not kept path=%s name=%s error=%s", path, name, e)
    if not member.isdir():
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
