"""Test images built from Debian's busybox-static, and the archive formats they ship in.

`busybox_image()` is a two-layer image:

- layer 1: ``/bin/busybox`` with one symlink per applet, ``/etc/passwd`` and
  ``/etc/group``, plus entries that exercise the unpacker: ``/etc/remove-me``,
  ``/opaque/{old,keep-not}``, a hardlink ``/etc/passwd.link``, a character device
  ``/dev/testnull`` (1:3), a FIFO ``/run/fifo``, a setuid file ``/bin/suid``, a file
  owned by 1000:1000 with mode 0640 ``/home/user/secret``
- layer 2: a whiteout of ``/etc/remove-me``, an opaque ``/opaque/`` holding only
  ``new``, ``/etc/layer2``, and ``/etc/group.link`` hard-linked to layer 1's
  ``/etc/group``

Built in memory (a few tenths of a second, once per process) with fixed mtimes, so
digests are stable. Writers for ``docker save`` and OCI layout archives, and a push
helper over the distribution API, live here too.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    """An in-memory layer tar, entry by entry."""

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
    """An image of the given uncompressed layer tars (bottom first)."""
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


@functools.cache
def busybox_tars(busybox: str = BUSYBOX) -> tuple[bytes, bytes]:
    """The two layer tars of the test busybox image (uncompressed)."""
    lower = TarBuilder()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "root"):
        lower.dir(d)
    lower.dir("tmp", 0o1777)
    lower.dir("run")
    lower.dir("home")
    lower.dir("home/user", 0o750, 1000, 1000)
    lower.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    applets = subprocess.run(
        [busybox, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in sorted(set(applets)):
        if applet != "bin/busybox" and applet.count("/") >= 1:
            lower.symlink(applet, "/bin/busybox")
    lower.file(
        "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
    )
    lower.file("etc/group", b"root:x:0:\nuser:x:1000:\n")
    lower.hardlink("etc/passwd.link", "etc/passwd")
    lower.file("etc/remove-me", b"layer 1\n")
    lower.dir("opaque")
    lower.file("opaque/old", b"old\n")
    lower.file("opaque/keep-not", b"gone after layer 2\n")
    lower.device("dev/testnull", 1, 3)
    lower.fifo("run/fifo")
    lower.file("bin/suid", b"#!/bin/sh\n", 0o4755)
    lower.file("home/user/secret", b"s3cret\n", 0o640, 1000, 1000, {"user.test": "yes"})

    upper = TarBuilder()
    upper.dir("etc")
    upper.file("etc/.wh.remove-me", b"")
    upper.dir("opaque")
    upper.file("opaque/.wh..wh..opq", b"")
    upper.file("opaque/new", b"new\n")
    upper.file("etc/layer2", b"layer 2\n")
    upper.hardlink("etc/group.link", "etc/group")
    return lower.done(), upper.done()


def busybox_image(**kwargs: object) -> Image:
    return build_image(list(busybox_tars()), **kwargs)  # type: ignore[arg-type]


# --- archives -------------------------------------------------------------------------


def _tar_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def _symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
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
                    _symlink(tar, name, f"../{written[digest(t)]}")
                else:
                    _tar_file(tar, name, t)
                    written[digest(t)] = name
                _tar_file(tar, f"{layer_id}/VERSION", b"1.0")
                layer_paths.append(name)
            config_name = image.config_digest[7:] + ".json"
            _tar_file(tar, config_name, image.config)
            entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_paths})
            for tag in tags:
                repo, _, version = tag.rpartition(":")
                repositories.setdefault(repo, {})[version] = layer_paths[-1].split("/")[0]
        _tar_file(tar, "manifest.json", json.dumps(entries).encode())
        _tar_file(tar, "repositories", json.dumps(repositories).encode())
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def write_oci_archive(
    path: Path,
    image: Image,
    name: str,
    *,
    compress: bool = False,
    index_of: list[tuple[Image, str]] | None = None,
) -> Path:
    """An OCI image layout as a tar. With `index_of` [(image, arch), ...], ``index.json``
    points to a nested image index listing those platforms (as ``docker buildx`` and
    ``skopeo --all`` write multi-platform images)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _tar_file(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        members = [image] + [im for im, _ in index_of or []]
        seen = set()
        for im in members:
            for blob in [im.manifest, im.config, *im.layers]:
                d = digest(blob)
                if d not in seen:
                    seen.add(d)
                    _tar_file(tar, "blobs/sha256/" + d[7:], blob)
        annotations = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rpartition(":")[2],
        }
        if index_of:
            nested = index_json(index_of)
            _tar_file(tar, "blobs/sha256/" + digest(nested)[7:], nested)
            top = {"mediaType": OCI_INDEX, "digest": digest(nested), "size": len(nested)}
        else:
            top = {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
            }
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{**top, "annotations": annotations}],
        }
        _tar_file(tar, "index.json", json.dumps(index).encode())
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def index_json(platforms: list[tuple[Image, str]], media_type: str = OCI_INDEX) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": im.media_type,
                    "digest": im.digest,
                    "size": len(im.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for im, arch in platforms
            ],
        }
    ).encode()


# --- pushing to a registry ------------------------------------------------------------


async def push(
    base: str,
    repo: str,
    tag: str,
    image: Image,
    auth: tuple[str, str] | None = None,
) -> None:
    """Push `image` as ``repo:tag`` through the distribution API: each blob by a
    monolithic upload (POST then PUT ?digest=), then the manifest."""
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    async with aiohttp.ClientSession(headers=headers) as http:
        for d, blob in image.blobs().items():
            await push_blob(http, base, repo, d, blob)
        await push_manifest(http, base, repo, tag, image.manifest, image.media_type)


async def push_blob(http: aiohttp.ClientSession, base: str, repo: str, d: str, blob: bytes) -> None:
    async with http.head(f"{base}/v2/{repo}/blobs/{d}") as resp:
        if resp.status == 200:
            return
    async with http.post(f"{base}/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    async with http.put(
        f"{location}{sep}digest={d}",
        data=blob,
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 201, await resp.text()


async def push_manifest(
    http: aiohttp.ClientSession, base: str, repo: str, ref: str, body: bytes, media_type: str
) -> None:
    async with http.put(
        f"{base}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
    ) as resp:
        assert resp.status == 201, await resp.text()


def tree(root: Path) -> set[str]:
    """The relative paths under `root` (for comparing unpacked layers)."""
    return {
        os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs
    }
