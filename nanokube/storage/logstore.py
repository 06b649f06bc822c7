"""The versioning rules every log-shaped `Store` shares, above its backend (kine's `logstructured`).

A backend keeps a log of revisions: one write is one revision, `_rev` is the
newest and `_compacted` the oldest still readable. What a revision means is
the same whatever holds the log, so it is written once here:

- an update or a delete applies to the key's current value, and only if the
  caller's expected revision (when given) is that value's `mod_revision`;
- an update keeps the key's `create_revision`; a delete's event carries the
  deleted value with the delete's revision;
- a read at revision 0 is at the newest revision; a read below the compacted
  revision, or above the newest, fails; so does a watch from before the
  compacted revision; compaction cannot pass the newest revision;
- watches are served by one `WatchHub`, fed from the write path.

A backend provides `_latest` (the key's current value), `_append` (commit one
event and publish it, in one synchronous step so watches have no gaps),
`create` (which needs what the backend knows of the key's deleted past),
`list`, `compact`, `close` and `_events_after`.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from nanokube.storage.store import (
    CompactedError,
    ConflictError,
    Event,
    KeyNotFoundError,
    KeyValue,
    StorageError,
)
from nanokube.storage.watchhub import WatchHub


class LogStore(ABC):
    """The shared half of a `Store`; subclasses set `_rev`, `_compacted` and `_hub`."""

    _rev: int
    _compacted: int
    _hub: WatchHub

    async def get(self, key: str) -> KeyValue | None:
        return self._latest(key)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        prev = self._existing(key, expected_revision)
        kv = KeyValue(key, value, prev.create_revision, self._rev + 1)
        self._append(Event("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        prev = self._existing(key, expected_revision)
        kv = KeyValue(key, prev.value, prev.create_revision, self._rev + 1)
        self._append(Event("DELETE", kv, prev))
        return kv

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return self._hub.watch(prefix, from_revision, self._history)

    async def current_revision(self) -> int:
        return self._rev

    @abstractmethod
    def _latest(self, key: str) -> KeyValue | None:
        """The key's current value, None if it does not exist (or is deleted)."""

    @abstractmethod
    def _append(self, event: Event) -> None:
        """Commit `event` at revision `event.revision`, then publish it to watchers."""

    @abstractmethod
    def _events_after(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        """Up to `limit` events under `prefix` after revision `after` (not compacted)."""

    def _existing(self, key: str, expected_revision: int) -> KeyValue:
        """The key's current value, checked against the caller's expected revision."""
        current = self._latest(key)
        if current is None:
            raise KeyNotFoundError(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current)
        return current

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

    def _check_compact(self, revision: int) -> None:
        """Refuse to compact past the newest revision."""
        if revision > self._rev:
            raise StorageError(f"cannot compact at {revision}: the current revision is {self._rev}")

    def _history(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        """The watch hub's source of past events: refused from before the compacted revision."""
        if after < self._compacted:
            raise CompactedError(after, self._compacted)
        return self._events_after(prefix, after, limit)
