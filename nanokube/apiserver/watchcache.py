"""The watch cache: every object of every kind in memory, fed by one store watch.

Lists, gets and watches are served from here, never from the store (as
upstream's cacher does). One watch on the whole `/registry/` prefix feeds it,
so the cache has one revision that can be compared with the store's: a read
that must see every acknowledged write waits until the cache has caught up with
the newest revision this server wrote (`wait_for`). Each resource prefix keeps
its objects and a window of recent events, from which a watch that starts at
an older revision is replayed; a revision older than the window gets 410.

Fan-out is one pass over a prefix's watchers per event; each watcher has its
own queue and filter, and an event's JSON line is encoded once and shared by
all the watchers that receive it unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from nanokube.storage.store import CompactedError, Event, KeyValue, Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Filter = Callable[[Obj], bool]

WINDOW = 20_000  # recent events kept per prefix for watches that resume from a revision
WATCHER_BACKLOG = 50_000  # events queued for one watcher before it is cut off (410)
_GROUP_SEGMENTS = frozenset({"apps", "batch", "policy", "autoscaling"})


def prefix_of(key: str) -> str:
    """The resource prefix of a key: `/registry/pods/` or `/registry/apps/deployments/`.

    A second path segment that is a group (it has a dot, or is one of the four
    dot-less built-in groups) is followed by the plural.
    """
    parts = key.split("/", 4)
    if "." in parts[2] or parts[2] in _GROUP_SEGMENTS:
        return f"/registry/{parts[2]}/{parts[3]}/"
    return f"/registry/{parts[2]}/"


def decode(kv: KeyValue) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


class WatchEvent:
    """One change as watchers see it; `line()` is its encoded stream line, made once."""

    __slots__ = ("type", "obj", "prev", "revision", "key", "_lines")

    def __init__(self, type: str, obj: Obj, prev: Obj | None, revision: int, key: str) -> None:
        self.type = type
        self.obj = obj
        self.prev = prev
        self.revision = revision
        self.key = key
        self._lines: dict[str, bytes] = {}

    def line(self, type: str | None = None) -> bytes:
        t = type or self.type
        cached = self._lines.get(t)
        if cached is None:
            cached = self._lines[t] = orjson.dumps({"type": t, "object": self.obj}) + b"\n"
        return cached


class Watcher:
    """One client's watch: a filter and a queue. `None` in the queue means: cut off, relist."""

    def __init__(self, namespace: str, match: Filter | None) -> None:
        self.namespace = namespace
        self.match = match
        self.queue: asyncio.Queue[tuple[str, WatchEvent] | None] = asyncio.Queue()
        self.cut_off = False

    def offer(self, event: WatchEvent) -> None:
        """Queue the event as this watcher sees it: selectors turn moves into ADDED/DELETED."""
        if self.cut_off:
            return
        if self.namespace and event.obj.get("metadata", {}).get("namespace") != self.namespace:
            return
        kind = event.type
        if self.match is not None:
            now = self.match(event.obj)
            before = event.prev is not None and self.match(event.prev)
            if kind == "MODIFIED":
                if now and not before:
                    kind = "ADDED"
                elif before and not now:
                    kind = "DELETED"
                elif not now:
                    return
            elif not now:
                return
        if self.queue.qsize() >= WATCHER_BACKLOG:
            self.cut_off = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait((kind, event))


class PrefixCache:
    """The objects of one resource (one storage prefix) and their recent events."""

    def __init__(self, prefix: str, revision: int) -> None:
        self.prefix = prefix
        self.objects: dict[str, Obj] = {}
        self.window: deque[WatchEvent] = deque()
        # Watches from any revision >= window_start can be replayed exactly.
        self.window_start = revision
        self.watchers: set[Watcher] = set()

    def apply(self, event: WatchEvent) -> None:
        if event.type == "DELETED":
            self.objects.pop(event.key, None)
        else:
            self.objects[event.key] = event.obj
        self.window.append(event)
        if len(self.window) > WINDOW:
            self.window_start = self.window.popleft().revision
        for w in self.watchers:
            w.offer(event)

    def items(self, namespace: str = "") -> list[tuple[str, Obj]]:
        """(key, object) pairs in key order, of one namespace or all."""
        if namespace:
            start = f"{self.prefix}{namespace}/"
            return sorted((k, o) for k, o in self.objects.items() if k.startswith(start))
        return sorted(self.objects.items())


class WatchCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.revision = 0
        self.prefixes: dict[str, PrefixCache] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._follow(), name="watch-cache")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for pc in self.prefixes.values():
            for w in pc.watchers:
                w.queue.put_nowait(None)

    def prefix(self, prefix: str) -> PrefixCache:
        pc = self.prefixes.get(prefix)
        if pc is None:
            pc = self.prefixes[prefix] = PrefixCache(prefix, self.revision)
        return pc

    async def _load(self) -> None:
        result = await self.store.list("/registry/")
        self.revision = result.revision
        for pc in self.prefixes.values():
            pc.objects.clear()
            pc.window.clear()
            pc.window_start = result.revision
        for kv in result.items:
            self.prefix(prefix_of(kv.key)).objects[kv.key] = decode(kv)
        self.ready.set()

    async def _follow(self) -> None:
        """Apply the store's changes until its watch ends (the store was closed)."""
        while True:
            try:
                async for event in self.store.watch("/registry/", self.revision):
                    self._apply(event)
                return
            except CompactedError:
                # We fell behind the store's history: start again from a fresh
                # list, and make every watcher relist (410), as upstream does.
                log.warning("watch cache fell behind the store; reloading rev=%d", self.revision)
                for pc in self.prefixes.values():
                    for w in pc.watchers:
                        w.cut_off = True
                        w.queue.put_nowait(None)
                    pc.watchers.clear()
                await self._load()

    def _apply(self, event: Event) -> None:
        kv = event.kv
        if event.type == "DELETE":
            prev = event.prev or kv
            obj = decode(prev)
            obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
            wev = WatchEvent("DELETED", obj, None, kv.mod_revision, kv.key)
        else:
            pc = self.prefixes.get(prefix_of(kv.key))
            old = pc.objects.get(kv.key) if pc else None
            wev = WatchEvent(
                "ADDED" if event.prev is None else "MODIFIED",
                decode(kv),
                old,
                kv.mod_revision,
                kv.key,
            )
        self.prefix(prefix_of(kv.key)).apply(wev)
        self.revision = kv.mod_revision
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        keep = []
        for target, fut in self._waiters:
            if target <= self.revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has applied `revision`; False on timeout."""
        if revision <= self.revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False

    def get(self, key: str) -> Obj | None:
        pc = self.prefixes.get(prefix_of(key))
        return pc.objects.get(key) if pc else None

    def add_watcher(
        self, prefix: str, namespace: str, match: Filter | None, from_revision: int | None
    ) -> Watcher:
        """Register a watcher; from_revision None = current state as ADDED events first.

        Raises CompactedError if `from_revision` is older than the prefix's window.
        """
        pc = self.prefix(prefix)
        w = Watcher(namespace, match)
        if from_revision is None:
            for key, obj in pc.items(namespace):
                if match is None or match(obj):
                    w.queue.put_nowait(("ADDED", WatchEvent("ADDED", obj, None, 0, key)))
        else:
            if from_revision < pc.window_start:
                raise CompactedError(from_revision, pc.window_start)
            for event in pc.window:
                if event.revision > from_revision:
                    w.offer(event)
        pc.watchers.add(w)
        return w

    def remove_watcher(self, prefix: str, watcher: Watcher) -> None:
        pc = self.prefixes.get(prefix)
        if pc is not None:
            pc.watchers.discard(watcher)

    def watcher_count(self) -> int:
        return sum(len(pc.watchers) for pc in self.prefixes.values())
