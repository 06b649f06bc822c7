"""Storage backend figures: writes, reads, lists of 10,000 objects, watch fan-out.

Run: .venv/bin/python bench/bench_storage.py [--objects N] [--value-size BYTES]

Prints figures only (no asserts). Targets they feed: the API server must do
>1,000 creates/s and list 10,000 objects in <0.3 s end to end, so the store's
share has to be a small fraction of that. The last section gives the figures
behind two design choices of the sqlite backend: calling sqlite on the event
loop thread (compared with the cost of a hop to a thread), and no group
commit (compared with batching 100 inserts per transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nanokube.storage.memory import MemoryStore
from nanokube.storage.sqlite import SqliteStore
from nanokube.storage.store import Store


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f}/s  ({seconds / n * 1e6:6.1f} us/op)"


async def bench_store(name: str, make: Callable[[], Store], n: int, value: bytes) -> None:
    print(f"--- {name} ({n} objects, {len(value)} B values)")
    store = make()
    keys = [f"/registry/pods/ns{i % 10}/pod-{i:06d}" for i in range(n)]

    latencies = []
    t0 = time.perf_counter()
    for key in keys:
        t = time.perf_counter()
        await store.create(key, value)
        latencies.append(time.perf_counter() - t)
    took = time.perf_counter() - t0
    latencies.sort()
    p50, p99, worst = (latencies[int(len(latencies) * q)] * 1e6 for q in (0.5, 0.99, 0.9999))
    print(
        f"create            {rate(n, took)}  p50 {p50:.0f} us, p99 {p99:.0f} us, p99.99 {worst:.0f} us"
    )

    sample = random.sample(keys, min(n, 10_000))
    t0 = time.perf_counter()
    for key in sample:
        await store.get(key)
    print(f"get               {rate(len(sample), time.perf_counter() - t0)}")

    t0 = time.perf_counter()
    for key in sample:
        kv = await store.get(key)
        assert kv is not None
        await store.update(key, value, kv.mod_revision)
    print(f"get+update (CAS)  {rate(len(sample), time.perf_counter() - t0)}")

    for label, prefix in (
        ("list all", "/registry/pods/"),
        ("list 1 ns of 10", "/registry/pods/ns3/"),
    ):
        runs = 5
        t0 = time.perf_counter()
        for _ in range(runs):
            listed = await store.list(prefix)
        took = (time.perf_counter() - t0) / runs
        print(f"{label:<17} {len(listed.items):>6} items in {took * 1e3:7.1f} ms")

    # a paginated list, 500 per page, pages 2..n at the first page's revision
    # while writes go on (the continue-token path)
    t0 = time.perf_counter()
    page = await store.list("/registry/pods/", limit=500)
    pages = 1
    while page.more:
        await store.create(f"/registry/pods/zz/new-{pages}", value)
        page = await store.list(
            "/registry/pods/", start_after=page.items[-1].key, limit=500, revision=page.revision
        )
        pages += 1
    print(f"list by 500s      {pages:>6} pages in {(time.perf_counter() - t0) * 1e3:7.1f} ms")

    rev = await store.current_revision()
    t0 = time.perf_counter()
    await store.compact(rev)
    print(
        f"compact at {rev:<6} {(time.perf_counter() - t0) * 1e3:7.1f} ms (removes the updates' old rows)"
    )

    await bench_watch(store, value)
    await store.close()


async def bench_watch(store: Store, value: bytes) -> None:
    writes = 200
    for watchers, shared in ((1, True), (1000, True), (1000, False)):
        start = await store.current_revision()
        got = 0

        async def follow(prefix: str, start: int, expect: int) -> None:
            nonlocal got
            async for event in store.watch(prefix, start):
                got += 1
                if event.revision >= expect:
                    return

        prefixes = ["/w/"] * watchers if shared else [f"/w/{i % 1000}/" for i in range(watchers)]
        last = start + writes
        tasks = [asyncio.create_task(follow(p, start, last if shared else 0)) for p in prefixes]
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for i in range(writes):
            await store.create(f"/w/{i % 1000}/{start}-{i}", value)
            await asyncio.sleep(0)
        write_time = time.perf_counter() - t0
        if shared:
            await asyncio.gather(*tasks)
        else:
            await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        total = time.perf_counter() - t0
        what = "same prefix" if shared else "own prefixes"
        print(
            f"watch {watchers:>4} x {what:<12} {writes} writes: {write_time / writes * 1e6:7.1f} us/write"
            f" with the loop shared, {got} deliveries in {total * 1e3:6.1f} ms"
        )


async def bench_choices(tmp: Path) -> None:
    print("--- sqlite design choices")
    n = 1000
    t0 = time.perf_counter()
    for _ in range(n):
        await asyncio.to_thread(int)
    print(f"hop to a thread and back      {(time.perf_counter() - t0) / n * 1e6:6.1f} us")

    value = b"x" * 2000
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value BLOB)")
    db.execute("CREATE UNIQUE INDEX t_name ON t (name)")
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        db.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"a{i}", value))
    print(f"insert, one commit each       {rate(n, time.perf_counter() - t0)}")
    t0 = time.perf_counter()
    for b in range(n // 100):
        db.execute("BEGIN")
        for i in range(n + b * 100, n + b * 100 + 100):
            db.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"a{i}", value))
        db.execute("COMMIT")
    print(f"insert, 100 per commit        {rate(n, time.perf_counter() - t0)}")
    db.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--value-size", type=int, default=2000)
    args = parser.parse_args()
    value = b"v" * args.value_size
    with tempfile.TemporaryDirectory() as tmp:
        await bench_store("memory", MemoryStore, args.objects, value)
        await bench_store(
            "sqlite", lambda: SqliteStore(Path(tmp) / "db" / "state.db"), args.objects, value
        )
        await bench_choices(Path(tmp))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
