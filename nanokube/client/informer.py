"""Informers: a local cache of one kind kept current by list+watch, with event handlers.

An informer lists the kind once, then watches from the list's
resourceVersion and applies every event to its `Indexer`, calling the
registered handlers (`on_add(obj)`, `on_update(old, new)`, `on_delete(obj)`)
as client-go's shared informers do. It recovers on its own:

- the server ends a watch (its timeout, a few minutes): watch again from the
  last resourceVersion seen, so nothing is missed and nothing relisted;
- the revision is too old (`errors.Expired`, HTTP 410) or the watch was cut
  off for falling behind: relist and reconcile the cache with the list (adds,
  updates for changed objects, deletes for vanished ones);
- any other failure (connection lost, server restarting): back off
  (1 s doubling to 30 s), then relist.

Handlers are plain functions called in the informer's task: they must be
quick (enqueue a key, not reconcile). With a resync period, every cached
object is passed to `on_update(obj, obj)` periodically, so controllers
revisit objects whose reconciliation depends on time or on other kinds.

`SharedInformerFactory` gives every controller the same informer per kind
(and namespace and selectors), so N controllers cost one watch and one cache.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.client.cache import Indexer, IndexFunc, key_of
from nanokube.client.interface import Client, Obj

log = logging.getLogger(__name__)


@dataclass
class EventHandlers:
    on_add: Callable[[Obj], Any] | None = None
    on_update: Callable[[Obj, Obj], Any] | None = None
    on_delete: Callable[[Obj], Any] | None = None


def _rv(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")


class Informer:
    """List+watch of one kind into an `Indexer`; see the module docstring."""

    def __init__(
        self,
        client: Client,
        kind: Kind,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float = 0.0,
        indexers: dict[str, IndexFunc] | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.cache = Indexer(indexers)
        # Watches last 5-10 minutes, spread so that informers do not all restart together.
        self.watch_timeout: Callable[[], int] = lambda: random.randint(300, 600)
        self.last_resource_version = ""
        # Seconds to wait after a failure, doubling up to the maximum.
        self.min_backoff = 1.0
        self.max_backoff = 30.0
        self.relists = 0  # how often the kind was listed: 1 when all went well
        self._events_since_list = 0
        self._handlers: list[EventHandlers] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- handlers and reads ---------------------------------------------------

    def add_event_handler(
        self,
        on_add: Callable[[Obj], Any] | None = None,
        on_update: Callable[[Obj, Obj], Any] | None = None,
        on_delete: Callable[[Obj], Any] | None = None,
    ) -> EventHandlers:
        """Register handlers; objects already cached are replayed to `on_add` first."""
        handlers = EventHandlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        if on_add is not None:
            for obj in self.cache.list():
                self._call(on_add, obj)
        return handlers

    def remove_event_handler(self, handlers: EventHandlers) -> None:
        self._handlers.remove(handlers)

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.cache.add_indexers(indexers)

    def get(self, name: str, namespace: str = "") -> Obj | None:
        """The cached object (shared: do not mutate), or None."""
        return self.cache.get_by_name(name, namespace if self.kind.namespaced else "")

    def list(self, namespace: str = "") -> builtins.list[Obj]:
        """The cached objects (shared: do not mutate), of one namespace or all."""
        return self.cache.list(namespace)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        return self.cache.by_index(index, value)

    @property
    def has_synced(self) -> bool:
        """True once the first list has been applied to the cache."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    # -- running --------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in a task of the current loop (once; later calls return the same task)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.kind.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """List and watch until cancelled."""
        resync = None
        if self.resync_period > 0:
            resync = asyncio.create_task(self._resync_loop(), name=f"resync-{self.kind.plural}")
        backoff = self.min_backoff
        try:
            while True:
                try:
                    await self._relist()
                    await self._watch_until_expired()
                except errors.Expired as e:
                    log.info("informer relisting resource=%s reason=%s", self.kind.plural, e)
                    if self._events_since_list:
                        backoff = self.min_backoff
                        continue
                    # Expired straight after a list: the server cannot serve that
                    # revision; relisting at once would spin.
                except Exception as e:  # noqa: BLE001 - any failure: back off, then relist
                    if self._events_since_list:
                        backoff = self.min_backoff  # it had been working: start over
                    log.warning(
                        "informer list/watch failed resource=%s error=%r retry_in=%.1fs",
                        self.kind.plural,
                        e,
                        backoff,
                    )
                await asyncio.sleep(backoff * random.uniform(1.0, 1.2))
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            if resync is not None:
                resync.cancel()

    async def _relist(self) -> None:
        listed = await self.client.list(
            self.kind,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.relists += 1
        self._events_since_list = 0
        self._replace(listed.get("items") or [])
        self.last_resource_version = (listed.get("metadata") or {}).get("resourceVersion", "")
        self._synced.set()

    def _replace(self, items: builtins.list[Obj]) -> None:
        """Make the cache equal the list, telling handlers what changed."""
        seen = set()
        for obj in items:
            key = key_of(obj)
            seen.add(key)
            old = self.cache.put(key, obj)
            if old is None:
                self._dispatch_add(obj)
            elif _rv(old) != _rv(obj):
                self._dispatch_update(old, obj)
        for key in self.cache.keys():
            if key not in seen:
                gone = self.cache.remove(key)
                if gone is not None:
                    self._dispatch_delete(gone)

    async def _watch_until_expired(self) -> None:
        """Watch from the last revision, again each time the server ends the watch."""
        while True:
            events = self.client.watch(
                self.kind,
                self.namespace,
                resource_version=self.last_resource_version,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                timeout_seconds=self.watch_timeout(),
            )
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for etype, obj in events:
                    self._apply(etype, obj)

    def _apply(self, etype: str, obj: Obj) -> None:
        self._events_since_list += 1
        rv = _rv(obj)
        if etype == "BOOKMARK":
            self.last_resource_version = rv or self.last_resource_version
            return
        key = key_of(obj)
        if etype == "DELETED":
            if self.cache.remove(key) is not None:
                self._dispatch_delete(obj)
        elif etype in ("ADDED", "MODIFIED"):
            old = self.cache.put(key, obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)
        if rv:
            self.last_resource_version = rv

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if not self.has_synced:
                continue
            for obj in self.cache.list():
                for h in list(self._handlers):
                    if h.on_update is not None:
                        self._call(h.on_update, obj, obj)

    # -- dispatch -------------------------------------------------------------

    def _dispatch_add(self, obj: Obj) -> None:
        for h in list(self._handlers):
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: Obj, new: Obj) -> None:
        for h in list(self._handlers):
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in list(self._handlers):
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _call(self, handler: Callable[..., Any], *args: Obj) -> None:
        try:
            handler(*args)
        except Exception:  # noqa: BLE001 - one handler's bug must not stop the informer
            log.exception("informer handler failed resource=%s", self.kind.plural)


class SharedInformerFactory:
    """One informer per (kind, namespace, selectors), shared by every controller."""

    def __init__(self, client: Client, resync_period: float = 0.0, namespace: str = "") -> None:
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace
        self._informers: dict[tuple[str, str, str, str, str], Informer] = {}

    def informer(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        indexers: dict[str, IndexFunc] | None = None,
    ) -> Informer:
        """The shared informer (created on first request); `indexers` are added to it."""
        ns = self.namespace if namespace is None else namespace
        key = (kind.api_version, kind.kind, ns, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(
                self.client,
                kind,
                ns,
                label_selector=label_selector,
                field_selector=field_selector,
                resync_period=self.resync_period,
            )
        if indexers:
            inf.add_indexers(indexers)
        return inf

    def start(self) -> None:
        """Start every informer not yet running (informers requested later need another call)."""
        for inf in self._informers.values():
            inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """Wait until every informer has listed once; False on timeout."""
        results = await asyncio.gather(
            *(inf.wait_for_sync(timeout) for inf in self._informers.values())
        )
        return all(results)

    async def shutdown(self) -> None:
        for inf in self._informers.values():
            await inf.stop()

    async def __aenter__(self) -> SharedInformerFactory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
