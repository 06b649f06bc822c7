"""Content-addressed blob storage: ``blobs/sha256/<hex>``, verified before it is visible.

Every write goes to a private file under ``tmp/``, is hashed while written, fsynced,
and renamed into place only when its digest is the one expected; a crash leaves at
most a stray temporary file (removed when the store opens), never a wrong blob under
a digest. Concurrent writers of one digest are serialised by an asyncio lock per
digest, so two pods pulling the same image download each blob once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nanokube.runtime.images.errors import ContentError

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
CHUNK = 1 << 20


def hex_of(digest: str) -> str:
    m = _DIGEST.fullmatch(digest)
    if m is None:
        raise ContentError(f"unsupported digest {digest!r} (only sha256 is supported)")
    return m.group(1)


class BlobWriter:
    """A file being written under ``tmp/`` and hashed on the way; `commit` verifies it
    and renames it into place, `abort` throws it away."""

    def __init__(self, store: BlobStore, expected: str | None, size: int | None) -> None:
        self.expected = expected
        self.expected_size = size
        self.size = 0
        self._store = store
        self._hash = hashlib.sha256()
        fd, self.path = tempfile.mkstemp(prefix="blob-", dir=store.tmp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self) -> str:
        """fsync, verify and rename into place; returns the digest."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self.expected is not None and self.digest != self.expected:
                raise ContentError(f"digest mismatch: expected {self.expected}, got {self.digest}")
            if self.expected_size is not None and self.size != self.expected_size:
                raise ContentError(
                    f"size mismatch for {self.digest}: expected {self.expected_size}, got {self.size}"
                )
            os.rename(self.path, self._store.path(self.digest))
            return self.digest
        finally:
            self.abort()

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class BlobStore:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root / "sha256"
        self.tmp = tmp
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._inflight: dict[str, asyncio.Future[None]] = {}
        """Digest -> resolved when the download running for it ends (either way)."""

    def path(self, digest: str) -> Path:
        return self.root / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ContentError(f"blob {digest} is missing from the store") from None

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed (0 when it was not there)."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def digests(self) -> list[str]:
        return [
            "sha256:" + p.name for p in self.root.iterdir() if _DIGEST.fullmatch("sha256:" + p.name)
        ]

    @contextmanager
    def writer(self, expected: str | None = None, size: int | None = None) -> Iterator[BlobWriter]:
        """Write a blob; leaving the block without error verifies it against `expected`
        (and `size`) and commits it. With no `expected`, the content names it."""
        w = BlobWriter(self, expected, size)
        try:
            yield w
            w.commit()
        finally:
            w.abort()

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data`; returns its digest."""
        with self.writer(expected) as w:
            w.write(data)
        return w.digest

    def adopt(self, path: Path, digest: str) -> None:
        """Move an already hashed file (on the same filesystem) in as blob `digest`."""
        target = self.path(digest)
        if target.exists():
            path.unlink()
        else:
            os.rename(path, target)

    async def ingest(
        self,
        digest: str,
        size: int | None,
        open_stream: Callable[[], Awaitable[AsyncIterator[bytes]]],
    ) -> bool:
        """Download blob `digest` unless it is already here; when another task is
        downloading it, wait for that one instead (and try ourselves only if it failed).
        Returns whether this call downloaded it."""
        while not self.has(digest):
            running = self._inflight.get(digest)
            if running is not None:
                await asyncio.shield(running)
                continue
            done = asyncio.get_running_loop().create_future()
            self._inflight[digest] = done
            try:
                chunks = await open_stream()
                w = BlobWriter(self, digest, size)
                try:
                    async for chunk in chunks:
                        w.write(chunk)
                    await asyncio.to_thread(w.commit)
                finally:
                    w.abort()
                log.debug("stored blob digest=%s size=%d", digest, w.size)
                return True
            finally:
                del self._inflight[digest]
                done.set_result(None)
        return False
