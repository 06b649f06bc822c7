"""The `Store` contract, run against every backend (memory, sqlite).

Aspects:
- writes: create fails on an existing key; update and delete are compare-and-swap
  on mod_revision (0 = unconditional); missing keys; one revision per write
- lists: prefix isolation, key order, pages, reads at a past revision (so that
  pages 2..n of a list do not see later writes), CompactedError below compaction
- watches: history then live events, in order, exactly once, also under
  concurrent writes; prefix isolation; deletes and updates carry the previous
  value; CompactedError below compaction; slow watchers catch up from the log;
  many watchers; close ends them
- compaction keeps current values and lets deleted keys be created again
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nanokube.storage.store import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StorageError,
    Store,
)


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    """The next `n` events of a watch (failing the test if they do not come)."""
    out: list[Event] = []
    async with asyncio.timeout(10):
        async for event in events:
            out.append(event)
            if len(out) == n:
                break
    return out


async def keys(store: Store, prefix: str = "", **kwargs: int | str) -> list[str]:
    return [kv.key for kv in (await store.list(prefix, **kwargs)).items]  # type: ignore[arg-type]


# --- writes ---


async def test_create_then_get(store: Store) -> None:
    kv = await store.create("/r/a", b"1")
    assert kv == KeyValue("/r/a", b"1", 1, 1)
    assert await store.get("/r/a") == kv
    assert await store.get("/r/b") is None


async def test_create_of_existing_key_fails(store: Store) -> None:
    await store.create("/r/a", b"1")
    with pytest.raises(KeyExistsError):
        await store.create("/r/a", b"2")
    assert (await store.get("/r/a")).value == b"1"  # type: ignore[union-attr]
    assert await store.current_revision() == 1


async def test_create_after_delete_starts_a_new_lifetime(store: Store) -> None:
    await store.create("/r/a", b"1")
    await store.delete("/r/a")
    kv = await store.create("/r/a", b"2")
    assert kv == KeyValue("/r/a", b"2", 3, 3)


async def test_update_is_compare_and_swap(store: Store) -> None:
    v1 = await store.create("/r/a", b"1")
    v2 = await store.update("/r/a", b"2", v1.mod_revision)
    assert v2 == KeyValue("/r/a", b"2", 1, 2)
    with pytest.raises(ConflictError) as err:
        await store.update("/r/a", b"3", v1.mod_revision)
    assert err.value.current == v2
    assert await store.get("/r/a") == v2
    v3 = await store.update("/r/a", b"3", 0)  # unconditional
    assert v3 == KeyValue("/r/a", b"3", 1, 3)


async def test_update_of_missing_or_deleted_key_fails(store: Store) -> None:
    with pytest.raises(KeyNotFoundError):
        await store.update("/r/a", b"1", 0)
    await store.create("/r/a", b"1")
    await store.delete("/r/a")
    with pytest.raises(KeyNotFoundError):
        await store.update("/r/a", b"2", 0)


async def test_delete_is_compare_and_swap(store: Store) -> None:
    v1 = await store.create("/r/a", b"1")
    v2 = await store.update("/r/a", b"2", 0)
    with pytest.raises(ConflictError) as err:
        await store.delete("/r/a", v1.mod_revision)
    assert err.value.current == v2
    assert await store.get("/r/a") == v2
    deleted = await store.delete("/r/a", v2.mod_revision)
    assert deleted == KeyValue("/r/a", b"2", 1, 3)  # the value, at the delete's revision
    assert await store.get("/r/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/r/a")


async def test_each_write_takes_the_next_revision_and_failures_take_none(store: Store) -> None:
    assert await store.current_revision() == 0
    revs = [(await store.create(f"/r/{i}", b"x")).mod_revision for i in range(5)]
    assert revs == [1, 2, 3, 4, 5]
    for attempt in (
        store.create("/r/0", b"x"),
        store.update("/r/0", b"y", 4),
        store.delete("/r/nope"),
    ):
        with pytest.raises(StorageError):
            await attempt
    assert await store.current_revision() == 5
    assert (await store.update("/r/0", b"y", 1)).mod_revision == 6
    assert (await store.delete("/r/1")).mod_revision == 7
    assert await store.current_revision() == 7


# --- lists ---


async def test_list_is_prefix_isolated_and_ordered(store: Store) -> None:
    for key in ("/a/y", "/ab/z", "/a/x", "/b/w", "/a", "/a/x/sub"):
        await store.create(key, key.encode())
    assert await keys(store, "/a/") == ["/a/x", "/a/x/sub", "/a/y"]
    assert await keys(store, "/a") == ["/a", "/a/x", "/a/x/sub", "/a/y", "/ab/z"]
    assert await keys(store) == ["/a", "/a/x", "/a/x/sub", "/a/y", "/ab/z", "/b/w"]
    assert await keys(store, "/c/") == []
    listed = await store.list("/b/")
    assert listed.items == [KeyValue("/b/w", b"/b/w", 4, 4)]
    assert listed.revision == 6 and not listed.more


async def test_list_pages_with_limit_and_start_after(store: Store) -> None:
    for i in range(7):
        await store.create(f"/r/{i}", b"x")
    await store.create("/s/0", b"x")
    await store.delete("/r/3")
    pages = []
    start = ""
    while True:
        page = await store.list("/r/", start_after=start, limit=2)
        pages.append([kv.key for kv in page.items])
        if not page.more:
            break
        start = page.items[-1].key
    assert pages == [["/r/0", "/r/1"], ["/r/2", "/r/4"], ["/r/5", "/r/6"]]
    # start_after below the prefix starts at the prefix
    assert await keys(store, "/r/", start_after="/a", limit=1) == ["/r/0"]


async def test_list_pages_stay_consistent_at_the_first_page_revision(store: Store) -> None:
    for i in range(6):
        await store.create(f"/r/{i}", f"v{i}".encode())
    first = await store.list("/r/", limit=3)
    assert [kv.key for kv in first.items] == ["/r/0", "/r/1", "/r/2"] and first.more
    # writes between the pages, all landing in page 2's range
    await store.create("/r/3a", b"new")
    await store.update("/r/4", b"changed", 0)
    await store.delete("/r/5")
    second = await store.list("/r/", start_after="/r/2", limit=3, revision=first.revision)
    assert second.revision == first.revision
    assert [(kv.key, kv.value) for kv in second.items] == [
        ("/r/3", b"v3"),
        ("/r/4", b"v4"),
        ("/r/5", b"v5"),
    ]
    assert not second.more
    now = await store.list("/r/", start_after="/r/2")
    assert [(kv.key, kv.value) for kv in now.items] == [
        ("/r/3", b"v3"),
        ("/r/3a", b"new"),
        ("/r/4", b"changed"),
    ]


async def test_list_at_a_past_revision(store: Store) -> None:
    await store.create("/r/a", b"1")  # 1
    await store.create("/r/b", b"1")  # 2
    await store.update("/r/a", b"2", 0)  # 3
    await store.delete("/r/b")  # 4
    await store.create("/r/c", b"1")  # 5
    at = {}
    for rev in range(1, 6):
        at[rev] = [
            (kv.key, kv.value, kv.mod_revision)
            for kv in (await store.list("/r/", revision=rev)).items
        ]
    assert at[1] == [("/r/a", b"1", 1)]
    assert at[2] == [("/r/a", b"1", 1), ("/r/b", b"1", 2)]
    assert at[3] == [("/r/a", b"2", 3), ("/r/b", b"1", 2)]
    assert at[4] == [("/r/a", b"2", 3)]
    assert at[5] == [("/r/a", b"2", 3), ("/r/c", b"1", 5)]
    with pytest.raises(StorageError):
        await store.list("/r/", revision=6)


async def test_list_below_the_compacted_revision_fails(store: Store) -> None:
    for i in range(4):
        await store.create(f"/r/{i}", b"1")
    first = await store.list("/r/", limit=2)  # at revision 4
    await store.update("/r/3", b"2", 0)  # 5
    await store.compact(5)
    with pytest.raises(CompactedError) as err:
        await store.list("/r/", start_after="/r/1", limit=2, revision=first.revision)
    assert (err.value.requested, err.value.compacted) == (4, 5)
    assert [kv.value for kv in (await store.list("/r/", revision=5)).items] == [b"1"] * 3 + [b"2"]


# --- compaction ---


async def test_compaction_keeps_current_values_and_allows_reuse_of_deleted_keys(
    store: Store,
) -> None:
    await store.create("/r/a", b"1")
    await store.update("/r/a", b"2", 0)
    await store.update("/r/a", b"3", 0)
    await store.create("/r/b", b"1")
    await store.delete("/r/b")
    await store.create("/r/c", b"1")
    await store.delete("/r/c")
    await store.create("/r/c", b"2")  # 8
    before = await store.list("")
    await store.compact(8)
    await store.compact(5)  # compacting below the mark is a no-op
    assert (await store.list("")).items == before.items
    assert await store.get("/r/b") is None
    assert await store.current_revision() == 8
    # deleted keys can be created again, current ones updated by their revision
    assert (await store.create("/r/b", b"2")).create_revision == 9
    assert (await store.update("/r/a", b"4", 3)).mod_revision == 10
    assert (await store.delete("/r/c", 8)).mod_revision == 11
    assert (await store.create("/r/c", b"3")).mod_revision == 12
    with pytest.raises(StorageError):
        await store.compact(13)


# --- watches ---


async def test_watch_delivers_history_then_live_events(store: Store) -> None:
    for i in range(5):
        await store.create(f"/r/{i}", b"x")
    events = store.watch("/r/", 2)
    history = await take(events, 3)
    assert [e.revision for e in history] == [3, 4, 5]
    await store.create("/r/5", b"x")
    await store.update("/r/0", b"y", 0)
    live = await take(events, 2)
    assert [(e.revision, e.kv.key) for e in live] == [(6, "/r/5"), (7, "/r/0")]


async def test_watch_is_exactly_once_under_concurrent_writes(store: Store) -> None:
    await store.create("/r/seed", b"x")
    total = 300

    async def writer() -> None:
        for i in range(total):
            if i % 3 == 2:
                await store.update("/r/seed", str(i).encode(), 0)
            else:
                await store.create(f"/r/{i}", b"x")
            if i % 7 == 0:
                await asyncio.sleep(0)

    async def watcher(start: int) -> tuple[int, list[int]]:
        end = total + 1
        return start, [e.revision for e in await take(store.watch("/r/", start), end - start)]

    writing = asyncio.create_task(writer())
    watchers = [asyncio.create_task(watcher(0))]
    while not writing.done():
        # watchers starting mid-stream, from the past and from "now"
        rev = await store.current_revision()
        watchers.append(asyncio.create_task(watcher(rev)))
        watchers.append(asyncio.create_task(watcher(max(0, rev - 50))))
        await asyncio.sleep(0)
    await writing
    assert len(watchers) > 10
    for task in watchers:
        start, seen = await task
        assert seen == list(range(start + 1, total + 2))


async def test_watch_is_prefix_isolated(store: Store) -> None:
    events = store.watch("/a/", 0)
    await store.create("/ab/x", b"x")
    await store.create("/b/x", b"x")
    await store.create("/a/x", b"x")
    await store.create("/a", b"x")
    await store.create("/a/y", b"x")
    assert [e.kv.key for e in await take(events, 2)] == ["/a/x", "/a/y"]
    assert [e.kv.key for e in await take(store.watch("/a", 0), 4)] == [
        "/ab/x",
        "/a/x",
        "/a",
        "/a/y",
    ]


async def test_watch_events_carry_the_previous_value_live_and_from_history(store: Store) -> None:
    live = store.watch("/r/", 0)
    await store.create("/r/a", b"1")
    await store.update("/r/a", b"2", 1)
    await store.delete("/r/a", 2)
    expected = [
        Event("PUT", KeyValue("/r/a", b"1", 1, 1), None),
        Event("PUT", KeyValue("/r/a", b"2", 1, 2), KeyValue("/r/a", b"1", 1, 1)),
        Event("DELETE", KeyValue("/r/a", b"2", 1, 3), KeyValue("/r/a", b"2", 1, 2)),
    ]
    assert await take(live, 3) == expected
    assert await take(store.watch("/r/", 0), 3) == expected
    assert expected[0].is_create and not expected[1].is_create
    # a create after a delete is a create again
    await store.create("/r/a", b"3")
    assert (await take(store.watch("/r/", 3), 1))[0] == Event(
        "PUT", KeyValue("/r/a", b"3", 4, 4), None
    )


async def test_watch_below_the_compacted_revision_fails(store: Store) -> None:
    for i in range(4):
        await store.create(f"/r/{i}", b"x")
    await store.delete("/r/0")
    await store.compact(3)
    with pytest.raises(CompactedError) as err:
        await take(store.watch("/r/", 2), 1)
    assert (err.value.requested, err.value.compacted) == (2, 3)
    events = await take(store.watch("/r/", 3), 2)
    assert [(e.type, e.revision) for e in events] == [("PUT", 4), ("DELETE", 5)]
    assert events[1].prev == KeyValue("/r/0", b"x", 1, 1)


async def test_watch_from_a_future_revision_waits_for_it(store: Store) -> None:
    events = store.watch("/r/", 3)
    for i in range(5):
        await store.create(f"/r/{i}", b"x")
    assert [e.revision for e in await take(events, 2)] == [4, 5]


async def test_slow_watcher_catches_up_from_the_log(make_store) -> None:
    store = make_store(watch_window=4)
    await store.create("/r/first", b"x")
    events = store.watch("/r/", 0)
    await take(events, 1)  # now following the live feed
    for i in range(50):  # far more than the window, while the watcher sleeps
        await store.create(f"/r/{i}", b"x")
    assert [e.revision for e in await take(events, 50)] == list(range(2, 52))
    await store.create("/r/last", b"x")
    assert [e.revision for e in await take(events, 1)] == [52]


async def test_slow_watcher_fails_if_its_history_was_compacted(make_store) -> None:
    store = make_store(watch_window=4)
    events = store.watch("/r/", 0)
    await store.create("/r/first", b"x")
    await take(events, 1)
    for i in range(20):
        await store.create(f"/r/{i}", b"x")
    await store.compact(21)
    with pytest.raises(CompactedError):
        await take(events, 20)


async def test_many_watchers_each_get_their_events(store: Store) -> None:
    shared = [store.watch("/r/", 0) for _ in range(200)]
    own = [store.watch(f"/r/{i}/", 0) for i in range(200)]
    firsts = [asyncio.ensure_future(take(w, 1)) for w in shared + own]
    await asyncio.sleep(0)  # every watcher joins the live feed
    for i in range(200):
        await store.create(f"/r/{i}/x", b"x")
    got = await asyncio.gather(*firsts)
    assert all(events[0].revision == 1 for events in got[:200])
    assert [events[0].kv.key for events in got[200:]] == [f"/r/{i}/x" for i in range(200)]
    rest = await asyncio.gather(*(take(w, 199) for w in shared))
    assert all([e.revision for e in events] == list(range(2, 201)) for events in rest)


async def test_close_ends_watches(store: Store) -> None:
    events = store.watch("/r/", 0)
    waiting = asyncio.ensure_future(take(events, 1))
    await asyncio.sleep(0)
    await store.close()
    assert await waiting == []


async def test_watch_pages_through_a_long_history_while_writes_go_on(store: Store) -> None:
    for i in range(2500):  # more than one page of history
        await store.create(f"/r/{i}", b"x")
        await store.create(f"/other/{i}", b"x")
    events = store.watch("/r/", 0)
    first = await take(events, 1500)
    for i in range(2500, 2600):  # written while the watcher is inside its history
        await store.create(f"/r/{i}", b"x")
    rest = await take(events, 1100)
    assert [e.kv.key for e in first + rest] == [f"/r/{i}" for i in range(2600)]
    assert [e.revision for e in first + rest] == list(range(1, 5001, 2)) + list(range(5001, 5101))
