"""The controllers' work queue, as client-go's rate-limited work queue.

Event handlers add keys (`namespace/name`); workers `get()` a key, reconcile
it and call `done(key)`. The guarantees that make level-triggered controllers
simple:

- a key waiting in the queue is there once, however often it is added;
- a key is never handed to two workers at once: added while being processed,
  it is marked dirty and queued again when `done()` is called;
- a failed key comes back after a per-key exponential back-off
  (`add_rate_limited`: 5 ms doubling to 1000 s), and an overall token bucket
  (10 per second, burst 100) spreads many failures out: the two limits of
  upstream's `DefaultControllerRateLimiter`; `forget(key)` after a success
  resets the key's back-off;
- `add_after(key, delay)` queues a key later (the earliest of several requests
  wins), for re-checks such as "this pod becomes available in 10 s".

`shutdown()` wakes every waiting worker with `ShutDown`. `depth`, `adds_total`
and `retries_total` are the queue's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down: the worker should return."""


class RateLimiter(Generic[K]):
    """Upstream's default controller rate limiter: per-key exponential, overall token bucket."""

    def __init__(
        self,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
        qps: float = 10.0,
        burst: int = 100,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.qps = qps
        self.burst = burst
        self._failures: dict[K, int] = {}
        self._tokens = float(burst)
        self._last = time.monotonic()

    def when(self, key: K) -> float:
        """The delay before `key` may be retried; counts one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        exponential = min(self.base_delay * 2.0**failures, self.max_delay)
        return max(exponential, self._bucket_delay())

    def _bucket_delay(self) -> float:
        if self.qps <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0  # reserve a token, possibly one not yet earned
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def retries(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """A deduplicating, rate-limited queue of keys; see the module docstring."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter[K] | None = None) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[K] = rate_limiter or RateLimiter()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # waiting to be processed (queued, or queued again later)
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False
        self.adds_total = 0
        self.retries_total = 0

    @property
    def depth(self) -> int:
        """Keys waiting to be processed (the `workqueue_depth` metric)."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        """Queue `key` unless it is already waiting; if it is being processed, after `done`."""
        if self._shutting_down or key in self._dirty:
            return
        self.adds_total += 1
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending request for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._delayed[key] = (ready, loop.call_at(ready, self._fire, key))

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` again after its back-off: the way to retry a failed reconcile."""
        self.retries_total += 1
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the back-off from the beginning."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.retries(key)

    async def get(self) -> K:
        """The next key, marked as being processed; raises `ShutDown` once shut down."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Pass a wake-up meant for us on, so no queued key is left unserved.
                if fut.done() and not fut.cancelled() and self._queue:
                    self._wake_one()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        """Processing of `key` finished; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stop accepting keys, drop delayed ones and wake every waiting worker."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return


async def run_workers(
    queue: WorkQueue[K], sync: Callable[[K], Awaitable[None]], workers: int = 1
) -> None:
    """Reconcile keys with `workers` concurrent loops until the queue is shut down.

    Upstream's `processNextWorkItem`: a key whose `sync` raises is retried after its
    back-off; one that succeeds is forgotten (its back-off reset). Either way it is
    marked done, so that a key added meanwhile is processed again.
    """

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await sync(key)
            except Exception as e:  # noqa: BLE001 - any failure is retried with back-off
                log.warning(
                    "sync failed queue=%s key=%s retries=%d error=%r",
                    queue.name,
                    key,
                    queue.num_requeues(key),
                    e,
                )
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    async with asyncio.TaskGroup() as tg:
        for i in range(workers):
            tg.create_task(worker(), name=f"worker-{queue.name}-{i}")
