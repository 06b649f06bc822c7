"""Atomic projection of files into a volume directory: upstream's `AtomicWriter`.

configMap, secret, downwardAPI and projected volumes change while containers
read them, so a reader must never see half of an update. The layout is
upstream's (`pkg/volume/util/atomic_writer.go`):

    volume/
      ..2025_01_02_03_04_05.123456789/   the current payload, a fresh dir per update
        key1
        sub/key2
      ..data -> ..2025_01_02_03_04_05.123456789
      key1 -> ..data/key1                 one symlink per top-level entry
      sub -> ..data/sub

An update writes the whole payload into a new timestamped directory, points a
temporary symlink at it and renames that over `..data` (rename(2) is atomic),
adds the top-level symlinks new keys need, removes those of keys that went,
and deletes the old directory. A reader that opened `key1` before the swap
keeps the old file; one that opens it after gets the new one. All symlinks
are relative, so they resolve the same inside a container that bind-mounts
the volume somewhere else.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

DATA_DIR_NAME = "..data"
_DATA_DIR_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    """One file of a payload: its bytes and permission bits."""

    data: bytes
    mode: int = 0o644


Payload = dict[str, FileProjection]
"""Relative path (may contain `/`) -> file."""


class PayloadError(ValueError):
    """A path in the payload is absolute, escapes the volume or collides with another."""


def validate_path(path: str) -> None:
    """Upstream's rules: relative, no `..` element, not starting with `..`, not empty."""
    if not path:
        raise PayloadError("path must not be empty")
    if path.startswith("/"):
        raise PayloadError(f"path {path!r} must be relative")
    if path.startswith(".."):
        raise PayloadError(f"path {path!r} must not start with '..'")
    if ".." in path.split("/"):
        raise PayloadError(f"path {path!r} must not contain '..'")
    if len(path) > 4096:
        raise PayloadError(f"path {path!r} is too long")


def _normalise(payload: Payload) -> Payload:
    out: Payload = {}
    for path, item in payload.items():
        validate_path(path)
        clean = os.path.normpath(path)
        if clean in out:
            raise PayloadError(f"duplicate path {path!r}")
        out[clean] = item
    paths = sorted(out)
    for a, b in zip(paths, paths[1:], strict=False):
        if b.startswith(a + "/"):
            raise PayloadError(f"path {a!r} is both a file and a directory")
    return out


def current_payload_dir(target: str) -> str | None:
    """The timestamped directory `..data` points at, or None before the first write."""
    try:
        link = os.readlink(os.path.join(target, DATA_DIR_NAME))
    except OSError:
        return None
    return os.path.join(target, link)


def _unchanged(data_dir: str, payload: Payload) -> bool:
    """Whether the current directory holds exactly `payload`, modes included."""
    seen: set[str] = set()
    for dirpath, _, files in os.walk(data_dir):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, data_dir)
            item = payload.get(rel)
            if item is None:
                return False
            st = os.lstat(full)
            if st.st_mode & 0o7777 != item.mode or st.st_size != len(item.data):
                return False
            with open(full, "rb") as f:
                if f.read() != item.data:
                    return False
            seen.add(rel)
    return seen == set(payload)


def _new_timestamped_dir(target: str) -> str:
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    for _ in range(100):
        name = f"..{stamp}.{time.time_ns() % 1_000_000_000:09d}"
        path = os.path.join(target, name)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        os.chmod(path, 0o755)  # whatever the umask
        return path
    raise OSError(f"cannot create a payload directory under {target}")


def _write_files(data_dir: str, payload: Payload, gid: int | None) -> None:
    for rel, item in payload.items():
        full = os.path.join(data_dir, rel)
        parent = os.path.dirname(full)
        if parent != data_dir:
            os.makedirs(parent, 0o755, exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, item.data)
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, item.mode)
        finally:
            os.close(fd)


def write(target: str, payload: Payload, gid: int | None = None) -> bool:
    """Make `target` hold exactly `payload`; False when it already did (nothing written).

    `gid` (the pod's `fsGroup`) becomes the group of every file.
    """
    payload = _normalise(payload)
    os.makedirs(target, 0o755, exist_ok=True)
    old_dir = current_payload_dir(target)
    if old_dir is not None and os.path.isdir(old_dir) and _unchanged(old_dir, payload):
        return False
    old_top = _top_level(old_dir)
    new_dir = _new_timestamped_dir(target)
    try:
        _write_files(new_dir, payload, gid)
        tmp_link = os.path.join(target, _DATA_DIR_TMP)
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(os.path.basename(new_dir), tmp_link)
        os.rename(tmp_link, os.path.join(target, DATA_DIR_NAME))
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    new_top = _top_level(new_dir)
    for name in sorted(new_top - old_top):
        link = os.path.join(target, name)
        if os.path.lexists(link):
            if os.path.islink(link):
                os.unlink(link)
            else:
                raise PayloadError(f"{link} exists and is not a symlink")
        os.symlink(os.path.join(DATA_DIR_NAME, name), link)
    for name in sorted(old_top - new_top):
        link = os.path.join(target, name)
        if os.path.islink(link):
            os.unlink(link)
    if old_dir is not None and os.path.isdir(old_dir):
        shutil.rmtree(old_dir, ignore_errors=True)
    log.debug("volume payload written target=%s files=%d", target, len(payload))
    return True


def _top_level(data_dir: str | None) -> set[str]:
    if data_dir is None or not os.path.isdir(data_dir):
        return set()
    return set(os.listdir(data_dir))
