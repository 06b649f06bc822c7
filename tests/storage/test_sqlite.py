"""What the sqlite backend adds to the contract: its state outlives the process.

Aspects: reopening keeps values, revisions, history and the compaction mark;
the revision never goes back, even when compaction removed the newest rows;
one process at a time owns the file; the schema's UNIQUE(name, prev_revision)
rejects a second write after the same row; the file is in WAL mode.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nanokube.storage.sqlite import SqliteStore
from nanokube.storage.store import CompactedError, KeyValue, StorageError


async def test_reopen_keeps_values_history_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "db" / "state.db"
    store = SqliteStore(path)
    await store.create("/r/a", b"1")  # 1
    await store.update("/r/a", b"2", 1)  # 2
    await store.create("/r/b", b"1")  # 3
    await store.compact(2)
    await store.delete("/r/b")  # 4
    await store.close()

    store = SqliteStore(path)
    try:
        assert await store.current_revision() == 4
        assert await store.get("/r/a") == KeyValue("/r/a", b"2", 1, 2)
        assert await store.get("/r/b") is None
        assert [kv.key for kv in (await store.list("/r/", revision=3)).items] == ["/r/a", "/r/b"]
        with pytest.raises(CompactedError):
            await store.list("/r/", revision=1)
        events = store.watch("/r/", 2)
        assert [(e.type, e.revision) for e in [await anext(events), await anext(events)]] == [
            ("PUT", 3),
            ("DELETE", 4),
        ]
        assert (await store.create("/r/c", b"1")).mod_revision == 5
    finally:
        await store.close()


async def test_revision_does_not_go_back_after_compacting_the_newest_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.create("/r/a", b"1")
    await store.delete("/r/a")
    await store.compact(2)  # removes both rows: the table is empty
    await store.close()
    store = SqliteStore(path)
    try:
        assert await store.current_revision() == 2
        assert (await store.create("/r/a", b"1")).mod_revision == 3
    finally:
        await store.close()


async def test_one_process_owns_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    with pytest.raises(StorageError, match="in use"):
        SqliteStore(path)
    await store.close()
    await SqliteStore(path).close()


async def test_schema_rejects_two_writes_after_the_same_row(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.create("/r/a", b"1")
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    insert = "INSERT INTO log VALUES (?, '/r/a', 0, 0, 1, 1, ?)"
    db.execute(insert, (2, b"from writer one"))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, (3, b"from writer two"))
    db.close()
