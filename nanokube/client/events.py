"""The event recorder: core/v1 Events for what `kubectl describe` shows, as client-go's.

`record(obj, type, reason, message)` never blocks and never fails: the event is
queued and written by a background task, best effort (a full queue drops the
event, a failed write is logged), because reporting must never slow down or
break the controller that reports.

Repeats are aggregated as client-go's `EventCorrelator` does for identical
events: the same source, object, type, reason and message within the recorder's
memory (an LRU of 4096 entries) patch the existing Event's `count` and
`lastTimestamp` instead of creating another. If that Event has gone (deleted,
or expired by the server's TTL) a new one is created. Upstream's second stage,
folding similar events with different messages into one, and its per-object
spam filter are not implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind
from nanokube.client import kinds
from nanokube.client.interface import STRATEGIC_PATCH, Client, Obj

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
QUEUE_SIZE = 1000  # upstream's maxQueuedEvents
CACHE_SIZE = 4096  # upstream's maxLruCacheEntries


def involved_object(obj: Obj) -> Obj:
    """The ObjectReference an Event points at."""
    md = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "namespace": md.get("namespace", ""),
        "name": md.get("name", ""),
        "uid": md.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": md.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


def _event_kind() -> Kind:
    kind = kinds.by_kind("v1", "Event")
    if kind is None:
        raise LookupError("the Event kind (core/v1) is not declared")
    return kind


class EventRecorder:
    """Records Events for one component (`deployment-controller`, `kubelet`) and host."""

    def __init__(
        self, client: Client, component: str, host: str = "", *, event_kind: Kind | None = None
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.kind = event_kind or _event_kind()
        self._queue: asyncio.Queue[Obj] = asyncio.Queue(QUEUE_SIZE)
        # aggregation key -> (event namespace, event name, count)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """Queue an Event about `obj` (`type` is Normal or Warning); never blocks."""
        now = meta.now_rfc3339()
        md = obj.get("metadata") or {}
        source: Obj = {"component": self.component}
        if self.host:
            source["host"] = self.host
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # Upstream's naming: the object's name and the time in hex nanoseconds.
                "name": f"{md.get('name', '')}.{time.time_ns():x}",
                "namespace": md.get("namespace") or "default",
            },
            "involvedObject": involved_object(obj),
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "event queue full, dropping event reason=%s object=%s", reason, md.get("name")
            )
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-recorder")

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, NORMAL, reason, message)

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, WARNING, reason, message)

    async def flush(self) -> None:
        """Wait until every queued event has been written (or has failed)."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop the background task."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._write(event)
            except Exception as e:  # noqa: BLE001 - events are best effort
                log.warning("failed to write event reason=%s error=%r", event["reason"], e)
            finally:
                self._queue.task_done()

    @staticmethod
    def _key(event: Obj) -> tuple[str, ...]:
        ref = event["involvedObject"]
        return (
            event["source"].get("component", ""),
            event["source"].get("host", ""),
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("uid", ""),
            ref.get("apiVersion", ""),
            event["type"],
            event["reason"],
            event["message"],
        )

    async def _write(self, event: Obj) -> None:
        key = self._key(event)
        seen = self._seen.get(key)
        if seen is not None:
            namespace, name, count = seen
            patch = {"count": count + 1, "lastTimestamp": event["lastTimestamp"]}
            try:
                await self.client.patch(
                    self.kind, name, patch, namespace, patch_type=STRATEGIC_PATCH
                )
                self._remember(key, (namespace, name, count + 1))
                return
            except errors.NotFound:
                pass  # the earlier Event is gone: start a new one
        md = event["metadata"]
        created = await self.client.create(self.kind, event, md["namespace"])
        self._remember(key, (md["namespace"], created["metadata"]["name"], 1))

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
