"""The store's record of images: one JSON file, ``images.json``, changed atomically.

Shape::

    {"images": {IMAGE_ID: {manifest, config, blobs, layers (chain ids, bottom first),
                           size, created, last_used}},
     "layers": {CHAIN_ID: {diff_id, blob, size}},
     "refs":   {"docker.io/library/busybox:latest": IMAGE_ID,
                "docker.io/library/busybox@sha256:...": IMAGE_ID},
     "archives": {FILE_NAME: [size, mtime_ns]}}

An image's id is its config digest (as in the CRI and ``crictl images``). Readers load
the file when it changed on disk (cached by mtime and size); writers hold an exclusive
``flock`` on ``images.lock`` around read-modify-write and replace the file by rename
after an fsync, so a crash or a concurrent ``nanokube images import`` never leaves a
half-written or lost record. The functions at the bottom read and change a document:
finding an image by any of its names, building `Image` views, forgetting images.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanokube.runtime.images.errors import InvalidReference
from nanokube.runtime.images.reference import parse

Doc = dict[str, dict[str, Any]]
_SECTIONS = ("images", "layers", "refs", "archives")
_HEX = re.compile(r"(sha256:)?([0-9a-f]{4,64})")


class Index:
    def __init__(self, root: Path) -> None:
        self.path = root / "images.json"
        self._lock_path = root / "images.lock"
        self._cache: Doc | None = None
        self._stamp: tuple[int, int, int] | None = None

    def read(self) -> Doc:
        """The current document (shared: callers must not modify it)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {k: {} for k in _SECTIONS}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is None or stamp != self._stamp:
            doc = json.loads(self.path.read_bytes())
            for k in _SECTIONS:
                doc.setdefault(k, {})
            self._cache, self._stamp = doc, stamp
        return self._cache

    @contextmanager
    def update(self, durable: bool = True) -> Iterator[Doc]:
        """Yield a private copy of the document to change; it is written when the block
        ends without error (fsynced unless not `durable`: still atomic, but a power cut
        may undo it). Holds the file lock meanwhile (keep the block short)."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._cache = None
                doc = json.loads(json.dumps(self.read()))
                yield doc
                tmp = self.path.with_suffix(".json.tmp")
                with open(tmp, "w") as f:
                    json.dump(doc, f, indent=1, sort_keys=True)
                    f.flush()
                    if durable:
                        os.fsync(f.fileno())
                os.rename(tmp, self.path)
                self._cache = None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Image:
    id: str
    """The config digest."""
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    """Compressed size of the layers (what ``crictl images`` shows)."""
    manifest: str
    layers: tuple[str, ...]
    """Chain ids, bottom layer first."""
    created: float
    last_used: float

    @property
    def ref(self) -> str:
        """A name to show: the first tag, else the first repo digest, else the id."""
        return (self.repo_tags or self.repo_digests or (self.id,))[0]


def normalized(ref: str) -> str:
    try:
        return str(parse(ref))
    except InvalidReference:
        return ref


def resolve(doc: Doc, ref: str) -> str | None:
    """The id of the image `ref` names: an id, a name, ``name@digest`` or an id prefix."""
    if ref in doc["images"]:
        return ref
    try:
        parsed = parse(ref)
    except InvalidReference:
        parsed = None
    if parsed is not None:
        for name in (str(parsed), str(parsed.with_digest(parsed.digest))):
            if name in doc["refs"]:
                return str(doc["refs"][name])
    m = _HEX.fullmatch(ref)
    if m:
        matches = [i for i in doc["images"] if i[7:].startswith(m.group(2))]
        if len(matches) == 1:
            return matches[0]
    return None


def image(doc: Doc, image_id: str) -> Image:
    rec = doc["images"][image_id]
    names = sorted(n for n, i in doc["refs"].items() if i == image_id)
    return Image(
        id=image_id,
        repo_tags=tuple(n for n in names if "@" not in n),
        repo_digests=tuple(n for n in names if "@" in n),
        size=int(rec.get("size", 0)),
        manifest=str(rec.get("manifest", "")),
        layers=tuple(rec.get("layers", [])),
        created=float(rec.get("created", 0)),
        last_used=float(rec.get("last_used", 0)),
    )


def forget(doc: Doc, image_ids: list[str]) -> tuple[list[str], list[tuple[str, int]]]:
    """Drop images from the record; returns the blobs and (layer, size) no longer owned."""
    gone = [doc["images"].pop(i) for i in image_ids]
    for name in [n for n, i in doc["refs"].items() if i in image_ids]:
        del doc["refs"][name]
    kept_blobs = {b for rec in doc["images"].values() for b in rec.get("blobs", [])}
    kept_layers = {c for rec in doc["images"].values() for c in rec.get("layers", [])}
    blobs = sorted({b for rec in gone for b in rec.get("blobs", [])} - kept_blobs)
    layer_ids = sorted({c for rec in gone for c in rec.get("layers", [])} - kept_layers)
    doomed = [(c, int(doc["layers"].pop(c, {}).get("size", 0))) for c in layer_ids]
    return blobs, doomed
