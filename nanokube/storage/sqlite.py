"""The default `Store`: one SQLite file used as a log, in the manner of k3s's kine.

Every write appends one row to `log`, and the row's id is the write's
revision. The latest row of a name is the key's current value; older rows are
its history, which serves reads at a past revision (pages 2..n of a list) and
watches from a past revision. A row points at the name's previous row
(`prev_revision`), and `UNIQUE(name, prev_revision)` lets only one of two
writers that read the same current row append after it: that index is the
compare-and-swap. The same index answers "latest row of a name" (the highest
`prev_revision`) and "is this row still current at revision R" (no row points
back at it with an id <= R), so it is the only index the table needs.

A deletion is a row with `deleted = 1` and an empty value; the deleted value
is its previous row's. Compaction at revision C deletes every row superseded
by a row at or below C, and the deletions at or below C; `meta` records C.
The versioning rules above the table (expected revisions, readable revisions,
watches) are `LogStore`'s, shared with the in-memory store.

Durability and speed: WAL journal with `synchronous=NORMAL` means a commit is
a write into the WAL file without fsync. The write is in the OS once the
call returns, so it survives `kill -9` of the process (not a power cut, for
which etcd is the backend). Each write is one autocommitted INSERT after one
indexed SELECT, run directly on the event loop thread: a write takes tens of
microseconds, less than handing it to a thread would (see
bench/bench_storage.py). Running on the loop thread also makes a commit and
its publication to watchers one synchronous step, which `WatchHub` relies on
for gap-free watches. Measured and left out: group commit (100 inserts per
transaction are 3x cheaper, but one commit per write already does over
10,000 writes/s, ten times the API server's target) and a checkpoint thread
(under steady writes its WAL never reset and writes got slower; SQLite's own
checkpoint every 1,000 WAL pages costs one write a few milliseconds).

One process owns the file (it holds an exclusive lock on `PATH.lock`):
revisions are assigned from memory and watchers are fed from the write path.
"""

from __future__ import annotations

import asyncio
import builtins
import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from nanokube.storage.logstore import LogStore
from nanokube.storage.store import (
    ConflictError,
    Event,
    KeyExistsError,
    KeyValue,
    ListResult,
    StorageError,
)
from nanokube.storage.watchhub import WatchHub

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev ON log (name, prev_revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_LATEST = (
    "SELECT id, deleted, create_revision, value FROM log"
    " WHERE name = ? ORDER BY prev_revision DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Rows current at revision R (no successor at or below R) in a name range; the
# lower bound is `name >= prefix` for a first page, `name > start_after` after.
_LIST = (
    "SELECT name, create_revision, id, value FROM log AS l"
    " WHERE name {op} :low AND name < :high AND id <= :rev AND deleted = 0"
    " AND NOT EXISTS (SELECT 1 FROM log AS n"
    "   WHERE n.name = l.name AND n.prev_revision = l.id AND n.id <= :rev)"
    " ORDER BY name LIMIT :limit"
)
_LIST_FROM = _LIST.format(op=">=")
_LIST_AFTER = _LIST.format(op=">")
# Events after a revision; the previous row gives a deletion its value and an
# update its prev.
_HISTORY = (
    "SELECT l.id, l.name, l.created, l.deleted, l.create_revision, l.prev_revision, p.value"
    " , l.value FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision AND l.created = 0"
    " WHERE l.id > ? AND l.name >= ? AND l.name < ? ORDER BY l.id LIMIT ?"
)
# Compaction of (old, C]: the rows these rows superseded, then the deletions.
_COMPACT_SUPERSEDED = (
    "DELETE FROM log WHERE id IN"
    " (SELECT prev_revision FROM log WHERE id > ? AND id <= ? AND prev_revision > 0)"
)
_COMPACT_DELETIONS = "DELETE FROM log WHERE id > ? AND id <= ? AND deleted = 1"

# Revisions compacted per transaction, so that compacting a long history does
# not hold the event loop in one long statement (1,000 take ~20 ms).
_COMPACT_STEP = 1000

# Greater than any key: keys are text of code points below U+10FFFF.
_MAX_KEY = "\U0010ffff"


class SqliteStore(LogStore):
    """A `Store` in the SQLite file at `path` (created with its directory if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, watch_window: int = 1024) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(f"{path}.lock", "w")  # held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StorageError(f"{path} is in use by another process") from None
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        # Reading pages through a memory map instead of read() calls halves
        # the time of a large list (bench/bench_storage.py).
        self._db.execute("PRAGMA mmap_size = 1073741824")
        self._db.execute("PRAGMA cache_size = -65536")  # KiB: 64 MiB of pages
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()
        self._compacted: int = row[0] if row else 0
        (max_id,) = self._db.execute("SELECT max(id) FROM log").fetchone()
        # Compaction may have removed the newest rows (deletions), never its own mark.
        self._rev: int = max(max_id or 0, self._compacted)
        self._hub = WatchHub(watch_window)
        log.info("opened %s rv=%d compacted=%d", path, self._rev, self._compacted)

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        rev = self._read_revision(revision)
        params = {"high": _after(prefix), "rev": rev, "limit": limit + 1 if limit else -1}
        if start_after >= prefix:
            rows = self._db.execute(_LIST_AFTER, {"low": start_after, **params})
        else:
            rows = self._db.execute(_LIST_FROM, {"low": prefix, **params})
        items = [KeyValue(name, value, created, mod) for name, created, mod, value in rows]
        more = bool(limit) and len(items) > limit
        if more:
            del items[limit:]
        return ListResult(items, rev, more)

    async def create(self, key: str, value: bytes) -> KeyValue:
        row = self._db.execute(_LATEST, (key,)).fetchone()
        if row is not None and not row[1]:
            raise KeyExistsError(key)
        rev = self._rev + 1
        kv = KeyValue(key, value, rev, rev)
        self._append(Event("PUT", kv, None), row[0] if row else 0)
        return kv

    async def compact(self, revision: int) -> None:
        self._check_compact(revision)
        start = self._compacted
        while self._compacted < revision:
            old = self._compacted
            new = min(revision, old + _COMPACT_STEP)
            with self._db:  # one transaction per step
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(_COMPACT_SUPERSEDED, (old, new))
                self._db.execute(_COMPACT_DELETIONS, (old, new))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (new,)
                )
            self._compacted = new
            if new < revision:
                await asyncio.sleep(0)  # let requests in between steps
        if revision > start:
            log.debug("compacted rv=%d from=%d", revision, start)

    async def close(self) -> None:
        self._hub.close()
        self._db.close()
        self._lock.close()

    def _latest(self, key: str) -> KeyValue | None:
        row = self._db.execute(_LATEST, (key,)).fetchone()
        if row is None or row[1]:
            return None
        return KeyValue(key, row[3], row[2], row[0])

    def _append(self, event: Event, deleted_row: int = 0) -> None:
        """Commit one row, then publish its event, in one synchronous step.

        A create points at `deleted_row`, the key's deletion row if it had one.
        """
        kv, prev = event.kv, event.prev
        deleted = event.type == "DELETE"
        try:
            self._db.execute(
                _INSERT,
                (
                    kv.mod_revision,
                    kv.key,
                    prev is None,
                    deleted,
                    kv.create_revision,
                    deleted_row if prev is None else prev.mod_revision,
                    b"" if deleted else kv.value,
                ),
            )
        except sqlite3.IntegrityError:
            # Another writer appended after the same row: the schema's
            # compare-and-swap. Only a second process could get here, and the
            # lock file keeps it out; report it as the conflict it is.
            raise ConflictError(kv.key, self._latest(kv.key)) from None
        self._rev = kv.mod_revision
        self._hub.publish(event)

    def _events_after(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        rows = self._db.execute(_HISTORY, (after, prefix, _after(prefix), limit))
        events = []
        for rev, name, created, deleted, create_rev, prev_rev, prev_value, value in rows:
            prev = None if created else KeyValue(name, prev_value, create_rev, prev_rev)
            if deleted:
                events.append(Event("DELETE", KeyValue(name, prev_value, create_rev, rev), prev))
            else:
                events.append(Event("PUT", KeyValue(name, value, create_rev, rev), prev))
        return events


def _after(prefix: str) -> str:
    """A string above every key starting with `prefix` (for a `name < ?` bound)."""
    return prefix + _MAX_KEY
