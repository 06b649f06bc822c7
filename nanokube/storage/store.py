"""The storage contract every backend keeps: a revisioned key-value store with etcd semantics.

- one global, strictly increasing revision; each write gets the next one, and a
  key's `mod_revision` is the revision of its last write (an object's
  `resourceVersion`)
- `get`, and `list(prefix)` at a consistent revision with `limit` pages
- compare-and-swap writes: `create` fails if the key exists, `update` and
  `delete` fail unless the key's current `mod_revision` is the expected one,
  so concurrent writers of one key get `ConflictError`
- `watch(prefix, from_revision)` delivers every change after `from_revision`,
  in revision order, exactly once; a revision older than the last compaction
  raises `CompactedError`
- a write is acknowledged only once it survives `kill -9` of the process
- `compact(revision)` forgets history at or below `revision`: reads and
  watches from an older revision get `CompactedError`

Backends: `memory.MemoryStore()` and `sqlite.SqliteStore(path)`, which share
the watch fan-out of `watchhub.py`.

Errors:
- StorageError
  - KeyExistsError: create of a key that exists
  - KeyNotFoundError: update or delete of a key that does not exist
  - ConflictError: the key's revision is not the expected one (carries the current value)
  - CompactedError: the requested revision is older than the compacted history
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, `kv` is the deleted value with `mod_revision` = the delete's revision."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None  # the value before this change; None for a create

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def is_create(self) -> bool:
        return self.type == "PUT" and self.prev is None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool  # True if a `limit` cut the list; continue after items[-1].key


class StorageError(Exception):
    pass


class KeyExistsError(StorageError):
    pass


class KeyNotFoundError(StorageError):
    pass


class ConflictError(StorageError):
    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(key)
        self.current = current


class CompactedError(StorageError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} is older than the compacted revision {compacted}")
        self.requested = requested
        self.compacted = compacted


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        """Keys under `prefix` in key order, after `start_after`, at `revision` (0 = now).

        A `revision` older than compaction raises CompactedError (as a stale
        `continue` token must get 410); one newer than the current revision
        raises StorageError. `limit` 0 means no limit.
        """
        ...

    async def create(self, key: str, value: bytes) -> KeyValue: ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Replace the value if the key's mod_revision is `expected_revision` (0 = any)."""
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Remove the key; returns the deleted value with the delete's revision as mod_revision."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Every change under `prefix` with revision > `from_revision`, in order, forever.

        History first, then live events, with no gap or duplicate between them.
        Errors surface from iteration, not from this call: CompactedError if
        `from_revision` is older than compaction. A watcher that falls behind
        (it does not consume while writes go on) never slows writers: the
        in-process backends let it catch up from the log, and end it with
        CompactedError only if the history it still needs was compacted
        meanwhile; either way the caller's answer is to re-list and watch
        from the list's revision. A revision in the future waits for it. The
        iterator ends without error when the store is closed.
        """
        ...

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Forget superseded history at or below `revision` (a no-op below the last compaction).

        Current values are kept; a `revision` above the current one raises StorageError.
        """
        ...

    async def close(self) -> None: ...
