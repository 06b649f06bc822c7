"""Reading image archives: ``docker save`` tarballs and OCI image layouts.

- ``docker save`` (``manifest.json`` + ``repositories``): each ``manifest.json`` entry
  names a config file, its layer files (bottom first) and its ``RepoTags``. There is no
  registry manifest in it, so one is written (deterministically) for the record.
  Duplicate layers may be symlinks to another entry's file.
- OCI image layout (``oci-layout`` + ``index.json`` + ``blobs/sha256/``): each
  ``index.json`` entry is a manifest or an index (the host platform is chosen), named
  by ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name``.

Either may be gzip- or zstd-compressed as a whole. The archive is read once, as a
stream (a compressed tar cannot be read at random cheaply): every regular file is
hashed while copied to a staging directory next to the blob store, then the files the
images need are renamed into it and the rest dropped. Synchronous; the store calls it
in a thread.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanokube.runtime.images import manifest as mf
from nanokube.runtime.images.blobs import BlobStore
from nanokube.runtime.images.errors import ContentError, InvalidReference
from nanokube.runtime.images.layers import decompressed
from nanokube.runtime.images.reference import parse

log = logging.getLogger(__name__)

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd")
"""Files `import_dir` treats as archives."""

_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass
class _Staged:
    path: Path
    digest: str
    size: int
    magic: bytes
    kept: bool = False


class _Archive:
    """The staged files of one archive, by their name inside it."""

    def __init__(self, blobs: BlobStore, staging: Path) -> None:
        self.blobs = blobs
        self.staging = staging
        self.files: dict[str, _Staged] = {}
        self.aliases: dict[str, str] = {}

    def read(self, archive: Path) -> None:
        with decompressed(archive) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    for i, member in enumerate(tar):
                        name = posixpath.normpath(member.name.lstrip("/"))
                        if member.issym():
                            target = posixpath.join(posixpath.dirname(name), member.linkname)
                            self.aliases[name] = posixpath.normpath(target)
                        elif member.islnk():
                            self.aliases[name] = posixpath.normpath(member.linkname.lstrip("/"))
                        elif member.isfile():
                            self._stage(name, tar.extractfile(member), i)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise ContentError(
                    f"{archive.name}: not a tar archive: {e or type(e).__name__}"
                ) from None

    def _stage(self, name: str, src: Any, i: int) -> None:
        path = self.staging / str(i)
        h = hashlib.sha256()
        size = 0
        magic = b""
        with open(path, "wb") as out:
            while chunk := src.read(1 << 20):
                magic = magic or chunk[:4]
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        self.files[name] = _Staged(path, "sha256:" + h.hexdigest(), size, magic)

    def get(self, name: str) -> _Staged:
        name = posixpath.normpath(name.lstrip("/"))
        for _ in range(8):
            if name not in self.aliases:
                break
            name = self.aliases[name]
        staged = self.files.get(name)
        if staged is None:
            raise ContentError(f"archive lacks {name!r}")
        return staged

    def has(self, name: str) -> bool:
        return name in self.files or name in self.aliases

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.get(name).path.read_bytes())
        except ValueError as e:
            raise ContentError(f"{name} in the archive is not JSON: {e}") from None

    def blob(self, digest: str) -> _Staged:
        """An OCI layout blob, checked against its name."""
        staged = self.get("blobs/" + digest.replace(":", "/", 1))
        if staged.digest != digest:
            raise ContentError(f"archive blob {digest} has digest {staged.digest}")
        return staged

    def keep(self, staged: _Staged) -> str:
        """Move a staged file into the blob store (once), durably."""
        if not staged.kept:
            fd = os.open(staged.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.blobs.adopt(staged.path, staged.digest)
            staged.kept = True
        return staged.digest


def read_archive(path: Path, blobs: BlobStore) -> list[mf.ImageContents]:
    """The images of archive `path`, their blobs moved into `blobs`."""
    staging = Path(tempfile.mkdtemp(prefix="import-", dir=blobs.tmp))
    try:
        archive = _Archive(blobs, staging)
        archive.read(path)
        if archive.has("manifest.json"):
            images = _docker(archive)
        elif archive.has("index.json"):
            images = _oci(archive)
        else:
            raise ContentError(
                f"{path.name}: neither a docker save archive (manifest.json) "
                "nor an OCI image layout (index.json)"
            )
        if not images:
            raise ContentError(f"{path.name}: the archive holds no image")
        return images
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _layer_type(staged: _Staged) -> str:
    if staged.magic.startswith(_GZIP):
        return mf.DOCKER_LAYER_GZIP
    if staged.magic == _ZSTD:
        return mf.OCI_LAYER_ZSTD
    return mf.DOCKER_LAYER_TAR


def _names(candidates: list[str], what: str) -> list[str]:
    names = []
    for name in candidates:
        try:
            names.append(str(parse(name)))
        except InvalidReference as e:
            log.warning("ignoring image name archive_entry=%s name=%r error=%s", what, name, e)
    return names


def _docker(archive: _Archive) -> list[mf.ImageContents]:
    entries = archive.json("manifest.json")
    if not isinstance(entries, list):
        raise ContentError("manifest.json is not a list")
    tags_by_top = _repositories(archive)
    images = []
    for entry in entries:
        config_file = archive.get(entry["Config"])
        config = mf.Descriptor(mf.DOCKER_CONFIG, archive.keep(config_file), config_file.size)
        layers = []
        for name in entry.get("Layers") or []:
            staged = archive.get(name)
            layers.append(mf.Descriptor(_layer_type(staged), archive.keep(staged), staged.size))
        diff_ids = mf.diff_ids(mf.load_json(archive.blobs.read(config.digest), "image config"))
        if len(diff_ids) != len(layers):
            raise ContentError(f"config lists {len(diff_ids)} layers, manifest.json {len(layers)}")
        manifest = archive.blobs.put(mf.docker_manifest(config, layers))
        tags = entry.get("RepoTags") or []
        if not tags and entry.get("Layers"):
            tags = tags_by_top.get(posixpath.dirname(entry["Layers"][-1]), [])
        images.append(
            mf.ImageContents(
                manifest, config.digest, layers, diff_ids, _names(tags, "manifest.json")
            )
        )
    return images


def _repositories(archive: _Archive) -> dict[str, list[str]]:
    """The legacy ``repositories`` file: tags by top layer id, for untagged entries."""
    if not archive.has("repositories"):
        return {}
    result: dict[str, list[str]] = {}
    doc = archive.json("repositories")
    for repo, tags in (doc or {}).items():
        for tag, layer_id in (tags or {}).items():
            result.setdefault(layer_id, []).append(f"{repo}:{tag}")
    return result


def _oci(archive: _Archive) -> list[mf.ImageContents]:
    index = archive.json("index.json")
    if not isinstance(index, dict):
        raise ContentError("index.json is not an object")
    images = []
    for entry in index.get("manifests") or []:
        annotations = entry.get("annotations") or {}
        name = next((annotations[k] for k in _NAME_ANNOTATIONS if annotations.get(k)), "")
        top = str(entry.get("digest", ""))
        image = _oci_image(archive, top)
        names = _names([name], "index.json") if name else []
        image.names = names + [str(parse(n).with_digest(top)) for n in names[:1]]
        images.append(image)
    return images


def _oci_image(archive: _Archive, digest: str) -> mf.ImageContents:
    staged = archive.blob(digest)
    doc = mf.load_json(staged.path.read_bytes(), f"manifest {digest}")
    extra = []
    if mf.media_type_of(doc) in mf.INDEX_TYPES:
        extra.append(archive.keep(staged))
        digest = mf.pick_platform(doc).digest
        staged = archive.blob(digest)
        doc = mf.load_json(staged.path.read_bytes(), f"manifest {digest}")
    config_desc, layer_descs = mf.parse_manifest(doc)
    config = archive.blob(config_desc.digest)
    diff_ids = mf.diff_ids(mf.load_json(config.path.read_bytes(), "image config"))
    if len(diff_ids) != len(layer_descs):
        raise ContentError(f"config lists {len(diff_ids)} layers, manifest {len(layer_descs)}")
    for d in layer_descs:
        archive.keep(archive.blob(d.digest))
    archive.keep(config)
    archive.keep(staged)
    return mf.ImageContents(digest, config.digest, layer_descs, diff_ids, [], extra)
