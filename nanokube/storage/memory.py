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
or below C, deletions at or below C, and the log up to C. The versioning rules
(expected revisions, readable revisions, watches) are `LogStore`'s, as for sqlite.
"""

from __future__ import annotations

import bisect
import builtins
import logging

from nanokube.storage.logstore import LogStore
from nanokube.storage.store import Event, KeyExistsError, KeyValue, ListResult
from nanokube.storage.watchhub import WatchHub

log = logging.getLogger(__name__)

_Version = tuple[int, KeyValue | None]


class MemoryStore(LogStore):
    """A `Store` in process memory; `watch_window` is the per-prefix live event buffer."""

    def __init__(self, *, watch_window: int = 1024) -> None:
        self._rev = 0
        self._compacted = 0
        self._keys: list[str] = []
        self._versions: dict[str, list[_Version]] = {}
        self._log: list[Event] = []
        self._hub = WatchHub(watch_window)

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
        if self._latest(key) is not None:
            raise KeyExistsError(key)
        rev = self._rev + 1
        kv = KeyValue(key, value, rev, rev)
        self._append(Event("PUT", kv, None))
        return kv

    async def compact(self, revision: int) -> None:
        self._check_compact(revision)
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

    def _latest(self, key: str) -> KeyValue | None:
        versions = self._versions.get(key)
        return versions[-1][1] if versions else None

    def _append(self, event: Event) -> None:
        key = event.kv.key
        self._rev = rev = event.revision
        versions = self._versions.get(key)
        if versions is None:
            versions = self._versions[key] = []
            bisect.insort(self._keys, key)
        versions.append((rev, None if event.type == "DELETE" else event.kv))
        self._log.append(event)
        self._hub.publish(event)

    def _events_after(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
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
