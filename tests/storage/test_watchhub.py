"""The watch fan-out's own bookkeeping (its delivery guarantees are in test_contract.py).

Aspects: a watcher that stops (closed or abandoned after falling behind) leaves
its channel, and the hub forgets a prefix nobody watches; publishing with no
watchers costs nothing that lingers.
"""

from __future__ import annotations

from nanokube.storage.memory import MemoryStore


async def test_watchers_leave_their_channels(tmp_path) -> None:
    store = MemoryStore(watch_window=2)
    hub = store._hub
    watches = [store.watch("/a/", 0), store.watch("/a/", 0), store.watch("/b/x", 0)]
    await store.create("/a/1", b"x")
    await store.create("/b/x", b"x")
    for events in watches:
        await anext(events)
    assert hub.watchers == 3 and sorted(hub._lengths) == [3, 4]
    await watches[0].aclose()  # type: ignore[attr-defined]
    assert hub.watchers == 2
    for i in range(10):  # the other /a/ watcher falls behind ...
        await store.create(f"/a/{i}/", b"x")
    assert [e.kv.key for e in [await anext(watches[1]) for _ in range(10)]] == [
        f"/a/{i}/" for i in range(10)
    ]  # ... leaves, catches up from the log and rejoins
    assert hub.watchers == 2
    for events in watches[1:]:
        await events.aclose()  # type: ignore[attr-defined]
    assert hub.watchers == 0 and hub._channels == {} and hub._lengths == {}
    await store.create("/a/2", b"x")
