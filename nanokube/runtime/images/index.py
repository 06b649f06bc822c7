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
half-written or lost record.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Doc = dict[str, dict[str, Any]]
_SECTIONS = ("images", "layers", "refs", "archives")


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
    def update(self) -> Iterator[Doc]:
        """Yield a private copy of the document to change; it is written when the block
        ends without error. Holds the file lock meanwhile (keep the block short)."""
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
                    os.fsync(f.fileno())
                os.rename(tmp, self.path)
                self._cache = None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
