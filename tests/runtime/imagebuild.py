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
digests are stable. The general pieces (`TarBuilder`, `build_image`, the ``docker
save`` writer) are the product's, in `nanokube.runtime.images.busybox`, which also
writes the plain one-layer busybox image the e2e tests and demos run; an OCI layout
writer and a push helper over the distribution API live here.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import aiohttp

from nanokube.runtime.images.busybox import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MTIME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    PATH_ENV,
    Image,
    TarBuilder,
    add_file,
    build_image,
    digest,
    write_docker_archive,
)
from nanokube.runtime.testimage import BUSYBOX

__all__ = [
    "BUSYBOX",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "MTIME",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "PATH_ENV",
    "Image",
    "TarBuilder",
    "build_image",
    "busybox_image",
    "busybox_tars",
    "digest",
    "index_json",
    "push",
    "push_blob",
    "push_manifest",
    "tree",
    "write_docker_archive",
    "write_oci_archive",
]


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
        add_file(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        members = [image] + [im for im, _ in index_of or []]
        seen = set()
        for im in members:
            for blob in [im.manifest, im.config, *im.layers]:
                d = digest(blob)
                if d not in seen:
                    seen.add(d)
                    add_file(tar, "blobs/sha256/" + d[7:], blob)
        annotations = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rpartition(":")[2],
        }
        if index_of:
            nested = index_json(index_of)
            add_file(tar, "blobs/sha256/" + digest(nested)[7:], nested)
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
        add_file(tar, "index.json", json.dumps(index).encode())
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
