"""OCI and Docker schema 2 manifests, indexes and image configs: parsing, platform choice.

An image is reached from a name through at most one index (a Docker manifest list or
an OCI index, one entry per platform) and exactly one manifest (a config blob plus
the layer blobs, bottom first). `ImageContents` is what both pulling and importing
produce before the store unpacks: the digests of everything an image owns.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from typing import Any

from nanokube.runtime.contract import ImageConfig
from nanokube.runtime.images.errors import ContentError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER_TAR + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER_TAR + "+zstd"
LAYER_TYPES = frozenset(
    {
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_TAR,
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        # Non-distributable ("foreign") layers are plain layers stored elsewhere; when a
        # registry or archive does serve them, they unpack like any other.
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
HOST_ARCH = _ARCH.get(platform.machine(), platform.machine())


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass
class ImageContents:
    """Everything one image owns, by digest, ready for the store to unpack and record."""

    manifest: str
    """Digest of the image manifest."""
    config: str
    layers: list[Descriptor]
    """Bottom layer first."""
    diff_ids: list[str]
    """Digests of the uncompressed layers, from the config's ``rootfs.diff_ids``."""
    names: list[str] = field(default_factory=list)
    """Normalised references to point at the image (tags and ``name@digest``)."""
    extra_blobs: list[str] = field(default_factory=list)
    """Blobs kept with the image besides manifest, config and layers (the index)."""

    @property
    def blobs(self) -> list[str]:
        return [*self.extra_blobs, self.manifest, self.config, *(d.digest for d in self.layers)]

    @property
    def size(self) -> int:
        """Compressed size of the layers, as ``crictl images`` reports."""
        return sum(d.size for d in self.layers)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ContentError(f"{what} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ContentError(f"{what} is not a JSON object")
    return doc


def media_type_of(doc: dict[str, Any], header: str = "") -> str:
    """The manifest's media type: its own field, else the HTTP header, else its shape."""
    mt = doc.get("mediaType") or header.partition(";")[0].strip()
    if mt in MANIFEST_TYPES or mt in INDEX_TYPES:
        return str(mt)
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise ContentError(f"unsupported manifest media type {mt or 'unknown'!r}")


def _descriptor(d: Any, what: str) -> Descriptor:
    try:
        return Descriptor(str(d.get("mediaType", "")), str(d["digest"]), int(d["size"]))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ContentError(f"bad descriptor in {what}: {d!r}") from None


def pick_platform(index: dict[str, Any], arch: str = HOST_ARCH) -> Descriptor:
    """The linux/`arch` entry of an index (the first such, as containerd picks); entries
    without a platform count as matching, attestation manifests (``unknown``) never do."""
    fallback = None
    seen = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform")
        if plat is None:
            fallback = fallback or entry
            continue
        seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return _descriptor(entry, "index")
    if fallback is not None:
        return _descriptor(fallback, "index")
    raise ContentError(
        f"no match for platform linux/{arch} in manifest list (has {', '.join(seen) or 'nothing'})"
    )


def parse_manifest(doc: dict[str, Any]) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of an image manifest."""
    if doc.get("schemaVersion") != 2:
        raise ContentError(f"unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    config = _descriptor(doc.get("config"), "manifest config")
    layers = [_descriptor(d, "manifest layers") for d in doc.get("layers") or []]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise ContentError(f"unsupported layer media type {layer.media_type!r}")
    return config, layers


def diff_ids(config: dict[str, Any]) -> list[str]:
    rootfs = config.get("rootfs") or {}
    ids = rootfs.get("diff_ids")
    if rootfs.get("type") != "layers" or not isinstance(ids, list):
        raise ContentError("image config has no rootfs.diff_ids")
    return [str(i) for i in ids]


def image_config(config: dict[str, Any]) -> ImageConfig:
    """The run-time part of an image config (``docker inspect``'s ``Config``)."""
    c = config.get("config") or {}
    return ImageConfig(
        entrypoint=list(c.get("Entrypoint") or []),
        cmd=list(c.get("Cmd") or []),
        env=list(c.get("Env") or []),
        working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
    )


def docker_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A schema 2 manifest for content that came without one (``docker save`` archives);
    deterministic, so importing the same archive twice gives the same digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in layers],
    }
    return json.dumps(doc, indent=3).encode()
