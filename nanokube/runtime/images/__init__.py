"""nanokube's image store: pull, import, unpack, list, remove and collect images.

`ImageStore` is the one object the kubelet and ``nanokube images`` hold; the modules
behind it: `reference` (names), `registry` and `pull` (the distribution API),
`archive` (docker and OCI archives), `blobs` (content-addressed storage), `layers`
(overlayfs-ready unpacking), `index` (the record), `errors`.
"""

from nanokube.runtime.images.errors import (
    ArchiveError,
    ContentError,
    ImageError,
    ImageInUse,
    ImageNotFound,
    InvalidReference,
    PullError,
)
from nanokube.runtime.images.index import Image
from nanokube.runtime.images.reference import normalize
from nanokube.runtime.images.registry import credentials_from_dockerconfig
from nanokube.runtime.images.store import GCResult, ImageStore

__all__ = [
    "ArchiveError",
    "ContentError",
    "GCResult",
    "Image",
    "ImageError",
    "ImageInUse",
    "ImageNotFound",
    "ImageStore",
    "InvalidReference",
    "PullError",
    "credentials_from_dockerconfig",
    "normalize",
]
