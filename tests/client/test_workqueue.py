"""The work queue: deduplication while waiting, one worker per key, re-queue of a key added
while processed, per-key exponential back-off with forget, the token bucket, add_after,
shutdown, and the depth metric."""

from __future__ import annotations

import asyncio

import pytest

from nanokube.client.workqueue import RateLimiter, ShutDown, WorkQueue, run_workers


async def test_a_waiting_key_is_queued_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert q.depth == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert q.depth == 0


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert q.depth == 0  # not handed to a second worker while the first has it
    q.done(key)
    assert q.depth == 1
    assert await q.get() == "a"
    q.done("a")
    assert q.depth == 0


async def test_no_two_workers_hold_the_same_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    active: set[str] = set()
    overlaps = []
    processed = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0.001)
            processed.append(key)
            active.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for i in range(200):
        q.add(f"k{i % 5}")
        if i % 7 == 0:
            await asyncio.sleep(0)
    while q.depth or any(w for w in active):
        await asyncio.sleep(0.005)
    q.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert set(processed) == {f"k{i}" for i in range(5)}


async def test_waiting_workers_are_woken_by_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_shutdown_wakes_workers_with_shutdown() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shutdown()
    for g in getters:
        with pytest.raises(ShutDown):
            await g
    q.add("late")
    assert q.depth == 0


async def test_a_cancelled_worker_does_not_swallow_a_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("k")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "k"


def test_backoff_doubles_from_5ms_to_1000s_and_forget_resets() -> None:
    limiter: RateLimiter[str] = RateLimiter(qps=0)
    delays = [limiter.when("k") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    assert limiter.retries("k") == 20
    assert limiter.when("other") == 0.005  # per key
    limiter.forget("k")
    assert limiter.retries("k") == 0
    assert limiter.when("k") == 0.005


def test_the_token_bucket_spreads_a_burst_of_failures() -> None:
    limiter: RateLimiter[int] = RateLimiter(qps=10, burst=100)
    delays = [limiter.when(i) for i in range(110)]
    assert all(d == 0.005 for d in delays[:100])
    assert delays[-1] > 0.5  # the 110th waits about a second for its token


async def test_add_rate_limited_requeues_after_the_backoff() -> None:
    q: WorkQueue[str] = WorkQueue(rate_limiter=RateLimiter(base_delay=0.01, qps=0))
    q.add_rate_limited("k")
    assert q.depth == 0 and q.num_requeues("k") == 1
    assert await asyncio.wait_for(q.get(), 1) == "k"
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert q.retries_total == 1


async def test_add_after_keeps_the_earliest_request() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("k", 30)
    q.add_after("k", 0.01)
    q.add_after("k", 60)
    assert await asyncio.wait_for(q.get(), 1) == "k"
    q.done("k")
    await asyncio.sleep(0.05)
    assert q.depth == 0  # the later requests were folded into the earliest


async def test_shutdown_drops_delayed_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("k", 0.01)
    q.shutdown()
    await asyncio.sleep(0.03)
    assert q.depth == 0


async def test_run_workers_retries_failures_and_forgets_successes() -> None:
    q: WorkQueue[str] = WorkQueue("test", RateLimiter(base_delay=0.001, qps=0))
    attempts: dict[str, int] = {}

    async def sync(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if key == "flaky" and attempts[key] < 3:
            raise RuntimeError("not yet")
        if attempts.get("flaky", 0) >= 3 and key == "flaky":
            q.shutdown()

    q.add("ok")
    q.add("flaky")
    await asyncio.wait_for(run_workers(q, sync, workers=2), 5)
    assert attempts == {"ok": 1, "flaky": 3}
    assert q.num_requeues("flaky") == 0 and q.retries_total == 2
