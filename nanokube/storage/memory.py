"""In-memory `Store` for tests and simulation: the sqlite backend's semantics, nothing on disk.

State is kept the way the sqlite backend keeps its log table, so both answer
historical questions the same way:

- `_versions[key]`: the key's retained versions, oldest first, each
  `(revision, KeyValue)` or `(revision, None)` for a deletion
- `_keys`: every key with a retained version, sorted, so a prefix list is a
  bisect plus a scan
- `_log`: one `Event` per revision after the compacted revision, so
  `_log[rev - _compacted - 1]` is the event of revision `rev` and a watch
  replays history by slicing

Compaction at revision C drops every version superseded by another version at
or below C, deletions at or below C, and the log up to C.
"""

from __future__ import annotations

import bisect
import builtins
import logging
from collections.abc import AsyncIterator

from nanokube.storage.store import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StorageError,
)
from nanokube.storage.watchhub import WatchHub

log = logging.getLogger(__name__)

_Version = tuple[int, KeyValue | None]


class MemoryStore:
    """A `Store` in process memory; `watch_window` is the per-prefix live event buffer."""

    def __init__(self, *, watch_window: int = 1024) -> None:
        self._rev = 0
        self._compacted = 0
        self._keys: list[str] = []
        self._versions: dict[str, list[_Version]] = {}
        self._log: list[Event] = []
        self._hub = WatchHub(watch_window)

    async def get(self, key: str) -> KeyValue | None:
        return self._current(key)

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        rev = self._read_revision(revision)
        keys = self._keys
        if start_after >= prefix:
            start = bisect.bisect_right(keys, start_after)
        else:
            start = bisect.bisect_left(keys, prefix)
        items: list[KeyValue] = []
        more = False
        for i in range(start, len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            kv = _at(self._versions[key], rev)
            if kv is None:
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(kv)
        return ListResult(items, rev, more)

    async def create(self, key: str, value: bytes) -> KeyValue:
        if self._current(key) is not None:
            raise KeyExistsError(key)
        rev = self._rev + 1
        kv = KeyValue(key, value, rev, rev)
        self._commit(Event("PUT", kv, None))
        return kv

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        prev = self._existing(key, expected_revision)
        kv = KeyValue(key, value, prev.create_revision, self._rev + 1)
        self._commit(Event("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        prev = self._existing(key, expected_revision)
        kv = KeyValue(key, prev.value, prev.create_revision, self._rev + 1)
        self._commit(Event("DELETE", kv, prev))
        return kv

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return self._hub.watch(prefix, from_revision, self._history)

    async def current_revision(self) -> int:
        return self._rev

    async def compact(self, revision: int) -> None:
        if revision > self._rev:
            raise StorageError(f"cannot compact at {revision}: the current revision is {self._rev}")
        old = self._compacted
        if revision <= old:
            return
        dropped = self._log[: revision - old]
        del self._log[: revision - old]
        self._compacted = revision
        for key in {event.kv.key for event in dropped}:
            versions = self._versions[key]
            keep = _index_at(versions, revision)
            if versions[keep][1] is None:
                keep += 1  # a deletion at or below the compacted revision goes too
            del versions[:keep]
            if not versions:
                del self._versions[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
        log.debug("compacted rv=%d events=%d", revision, len(dropped))

    async def close(self) -> None:
        self._hub.close()

    def _current(self, key: str) -> KeyValue | None:
        versions = self._versions.get(key)
        return versions[-1][1] if versions else None

    def _existing(self, key: str, expected_revision: int) -> KeyValue:
        """The key's current value, checked against the caller's expected revision."""
        current = self._current(key)
        if current is None:
            raise KeyNotFoundError(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current)
        return current

    def _commit(self, event: Event) -> None:
        key = event.kv.key
        self._rev = rev = event.revision
        versions = self._versions.get(key)
        if versions is None:
            versions = self._versions[key] = []
            bisect.insort(self._keys, key)
        versions.append((rev, None if event.type == "DELETE" else event.kv))
        self._log.append(event)
        self._hub.publish(event)

    def _read_revision(self, revision: int) -> int:
        """The revision a read happens at: now for 0, else `revision` if still readable."""
        if revision == 0:
            return self._rev
        if revision < self._compacted:
            raise CompactedError(revision, self._compacted)
        if revision > self._rev:
            raise StorageError(
                f"revision {revision} is newer than the current revision {self._rev}"
            )
        return revision

    def _history(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        if after < self._compacted:
            raise CompactedError(after, self._compacted)
        events = self._log
        out: list[Event] = []
        for i in range(after - self._compacted, len(events)):
            event = events[i]
            if event.kv.key.startswith(prefix):
                out.append(event)
                if len(out) == limit:
                    break
        return out


def _index_at(versions: list[_Version], revision: int) -> int:
    """Index of the last version at or below `revision` (-1 if none)."""
    i = len(versions) - 1
    while i >= 0 and versions[i][0] > revision:
        i -= 1
    return i


def _at(versions: list[_Version], revision: int) -> KeyValue | None:
    """The key's value at `revision`, None if it did not exist then."""
    i = _index_at(versions, revision)
    return versions[i][1] if i >= 0 else None
