"""A busybox image built from Debian's ``busybox-static``, written as a ``docker save`` archive.

There is no registry to pull from on a machine without internet, so a node that
should run real pods gets its first image this way:

    python -m nanokube.runtime.images.busybox DATA_DIR/agent/images/busybox.tar

and the agent imports it at start (``nanokube images import`` does the same by
hand). The image has one layer: the root filesystem of `testimage` (``/bin/busybox``,
a symlink per applet, ``/etc/passwd`` and ``/etc/group``, the usual mount points)
tarred with fixed owners and mtimes, so the same busybox binary always gives the
same digests. Its config is ``testimage.IMAGE_CONFIG`` (``sh``, the usual PATH).

The pieces behind it are general and shared with the image tests, which build odder
images with them: `TarBuilder` (a layer tar entry by entry), `build_image` (config
and manifest over layer tars, docker or OCI media types) and `write_docker_archive`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nanokube.runtime import testimage

log = logging.getLogger(__name__)

MTIME = 1_700_000_000
"""Every entry's mtime: fixed, so an image's digests depend on its content only."""
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PATH_ENV = testimage.IMAGE_CONFIG.env[0]
DEFAULT_TAG = "busybox:latest"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    """An in-memory layer tar, entry by entry (root-owned, fixed mtime unless told)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        info.mtime = MTIME
        info.uname = info.gname = ""
        if data is not None:
            info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, gid
        self._add(info)

    def file(
        self,
        name: str,
        data: bytes,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        xattrs: dict[str, str] | None = None,
    ) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid = mode, uid, gid
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        self._add(info, data)

    def symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._add(info)

    def hardlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.LNKTYPE, target
        self._add(info)

    def device(self, name: str, major: int, minor: int, mode: int = 0o666) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, major, minor, mode
        self._add(info)

    def fifo(self, name: str, mode: int = 0o600) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.FIFOTYPE, mode
        self._add(info)

    def tree(self, root: Path, skip: Sequence[str] = ()) -> None:
        """Add everything under `root` (sorted, so the tar is reproducible) as root's."""

        def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if info.name in skip:
                return None
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            return info

        for entry in sorted(p.name for p in root.iterdir()):
            self.tar.add(root / entry, arcname=entry, filter=normalize)

    def done(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


@dataclass
class Image:
    """An image as a registry holds it: manifest, config and compressed layers."""

    config: bytes
    layers: list[bytes]
    """Compressed layer blobs, bottom first."""
    diff_ids: list[str]
    manifest: bytes
    media_type: str
    layer_media_type: str
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest(self.config)

    def blobs(self) -> dict[str, bytes]:
        return {digest(b): b for b in [self.config, *self.layers]}


def build_image(
    tars: list[bytes],
    *,
    oci: bool = False,
    compression: str = "gzip",
    cmd: list[str] | None = None,
    entrypoint: list[str] | None = None,
    arch: str = "amd64",
) -> Image:
    """An image of the given uncompressed layer tars (bottom first); `compression` is
    ``gzip``, ``zstd`` (needs the zstd command) or anything else for none."""
    if compression == "gzip":
        blobs = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
        layer_type = OCI_LAYER if oci else DOCKER_LAYER
    elif compression == "zstd":
        blobs = [
            subprocess.run(["zstd", "-q", "-c"], input=t, capture_output=True, check=True).stdout
            for t in tars
        ]
        layer_type = "application/vnd.oci.image.layer.v1.tar+zstd"
    else:
        blobs = list(tars)
        layer_type = "application/vnd.oci.image.layer.v1.tar"
    diff_ids = [digest(t) for t in tars]
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": [PATH_ENV],
                "Cmd": cmd if cmd is not None else ["sh"],
                "Entrypoint": entrypoint,
                "WorkingDir": "/",
                "User": "",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
        }
    ).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": digest(b), "size": len(b)} for b in blobs
            ],
        }
    ).encode()
    return Image(config, blobs, diff_ids, manifest, media_type, layer_type)


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A regular file entry of an archive (not of a layer)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, MTIME
    tar.addfile(info)


def write_docker_archive(
    path: Path, images: list[tuple[Image, list[str]]], compress: bool = False
) -> Path:
    """``docker save`` format (classic, as docker < 25 writes it): uncompressed
    ``<id>/layer.tar`` files (a layer shared with an earlier image becomes a symlink,
    as docker does), ``<config hex>.json``, ``manifest.json`` and ``repositories``."""
    buf = io.BytesIO()
    entries: list[dict[str, object]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: dict[str, str] = {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for image, tags in images:
            tars = [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in image.layers]
            layer_paths = []
            for i, t in enumerate(tars):
                layer_id = hashlib.sha256(f"{image.config_digest} {i}".encode()).hexdigest()
                name = f"{layer_id}/layer.tar"
                if digest(t) in written:
                    _add_symlink(tar, name, f"../{written[digest(t)]}")
                else:
                    add_file(tar, name, t)
                    written[digest(t)] = name
                add_file(tar, f"{layer_id}/VERSION", b"1.0")
                layer_paths.append(name)
            config_name = image.config_digest[7:] + ".json"
            add_file(tar, config_name, image.config)
            entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_paths})
            for tag in tags:
                repo, _, version = tag.rpartition(":")
                repositories.setdefault(repo, {})[version] = layer_paths[-1].split("/")[0]
        add_file(tar, "manifest.json", json.dumps(entries).encode())
        add_file(tar, "repositories", json.dumps(repositories).encode())
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def busybox_layer(busybox: str = testimage.BUSYBOX) -> bytes:
    """The one layer tar (uncompressed): `testimage`'s root filesystem."""
    with tempfile.TemporaryDirectory(prefix="nanokube-busybox-") as tmp:
        root = testimage.build_busybox_rootfs(Path(tmp) / "rootfs", busybox)
        layer = TarBuilder()
        layer.tree(root, skip=(testimage.COMPLETE_MARKER,))
        return layer.done()


def busybox_image(busybox: str = testimage.BUSYBOX) -> Image:
    """The one-layer busybox image (docker media types), config as `testimage`'s."""
    config = testimage.IMAGE_CONFIG
    return build_image([busybox_layer(busybox)], cmd=list(config.cmd))


def write_busybox_archive(path: Path, tag: str = DEFAULT_TAG) -> Path:
    """Write the busybox image as a ``docker save`` archive tagged `tag`; returns `path`.

    Raises `FileNotFoundError` when busybox-static is not installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = busybox_image()
    write_docker_archive(path, [(image, [tag])])
    log.info("wrote busybox image archive=%s tag=%s digest=%s", path, tag, image.digest)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nanokube.runtime.images.busybox",
        description="Write a busybox image (from Debian's busybox-static) as a docker "
        "save archive, for `nanokube images import` or DATA_DIR/agent/images/.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="the archive to write")
    parser.add_argument("--tag", default=DEFAULT_TAG, help="image name (default %(default)s)")
    opts = parser.parse_args(argv)
    try:
        write_busybox_archive(opts.path, opts.tag)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(opts.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
