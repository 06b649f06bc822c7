"""Watch fan-out shared by the in-process backends (memory, sqlite).

A watch is history first, then live events. Both come from the same place in
the end, the backend's log, so the seam between them is where a gap or a
duplicate could creep in. The rule that closes it: the backend commits and
publishes a write in one synchronous step (no `await` in between), and a
watcher reads its last page of history and joins the live feed in one
synchronous step too. On a single asyncio thread no write can fall between
the two, so live events start exactly after the last history event.

Live events go to one *channel* per watched prefix: a list of recent events
shared by every watcher of that prefix, each watcher holding its own cursor.
A write costs one append per matching channel (found by looking up the key's
prefixes of the watched lengths, not by testing every watcher) and one wakeup,
however many watchers share the channel; memory is bounded by the channel's
window, not by the number of watchers.

A watcher that falls more than `window` events behind its channel does not
stall writers and is not dropped: it leaves the channel and catches up from
the backend's log (`read_history`), then rejoins. It fails only if that
history has been compacted meanwhile, with `CompactedError`, the same error
(410 Expired) a client gets for a stale resourceVersion, so the caller's one
recovery path, re-list then watch, covers both cases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from nanokube.storage.store import Event

log = logging.getLogger(__name__)

# Events read from the log per history query: large enough to amortise the
# query, small enough that one page does not hold the event loop for long.
HISTORY_PAGE = 1000

# Reads the events under `prefix` with revision > `after`, in order, at most
# `limit` of them; raises CompactedError if `after` is older than compaction.
ReadHistory = Callable[[str, int, int], list[Event]]


class _Channel:
    """Recent events under one prefix, shared by all the watchers of that prefix."""

    __slots__ = ("events", "base", "wakeup", "watchers")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.base = 0  # sequence number of events[0]; cursors are sequence numbers
        self.wakeup = asyncio.Event()
        self.watchers = 0

    @property
    def end(self) -> int:
        return self.base + len(self.events)

    def append(self, event: Event, window: int) -> None:
        events = self.events
        events.append(event)
        if len(events) >= 2 * window:
            # Drop the older half at once: amortised O(1) per event, and the
            # channel always keeps at least `window` events for slow watchers.
            del events[:window]
            self.base += window
        self.wakeup.set()
        self.wakeup.clear()


class WatchHub:
    """Delivers a backend's committed events to its watchers.

    The backend calls `publish` right after each commit, synchronously, and
    serves `Store.watch` with `watch(prefix, from_revision, read_history)`.
    """

    def __init__(self, window: int = 1024) -> None:
        self._window = window
        self._channels: dict[str, _Channel] = {}
        # Distinct lengths of the watched prefixes (length -> channel count):
        # publish looks up key[:n] for each, so its cost does not grow with
        # the number of watchers.
        self._lengths: dict[int, int] = {}
        self._closed = False

    @property
    def watchers(self) -> int:
        """How many watchers are following the live feed (not catching up from history)."""
        return sum(ch.watchers for ch in self._channels.values())

    def publish(self, event: Event) -> None:
        key = event.kv.key
        size = len(key)
        channels = self._channels
        for n in self._lengths:
            if n <= size:
                channel = channels.get(key[:n])
                if channel is not None:
                    channel.append(event, self._window)

    def close(self) -> None:
        """End every watch iterator (they stop without error)."""
        self._closed = True
        for channel in self._channels.values():
            channel.wakeup.set()

    async def watch(
        self, prefix: str, from_revision: int, read_history: ReadHistory
    ) -> AsyncIterator[Event]:
        after = from_revision
        while not self._closed:
            page = read_history(prefix, after, HISTORY_PAGE)
            if len(page) == HISTORY_PAGE:
                for event in page:
                    after = event.revision
                    yield event
                continue
            # The page is short, so it reached the current revision: join the
            # live feed now, before anything can be written.
            channel = self._join(prefix)
            cursor = channel.end
            try:
                for event in page:
                    after = event.revision
                    yield event
                while True:
                    if cursor < channel.base:
                        log.debug(
                            "watcher fell behind, catching up from the log prefix=%s rv=%d",
                            prefix,
                            after,
                        )
                        break
                    if cursor < channel.end:
                        event = channel.events[cursor - channel.base]
                        cursor += 1
                        # Only a watch from a future revision sees older events here.
                        if event.revision > after:
                            after = event.revision
                            yield event
                        continue
                    if self._closed:
                        return
                    await channel.wakeup.wait()
            finally:
                self._leave(prefix, channel)

    def _join(self, prefix: str) -> _Channel:
        channel = self._channels.get(prefix)
        if channel is None:
            channel = self._channels[prefix] = _Channel()
            self._lengths[len(prefix)] = self._lengths.get(len(prefix), 0) + 1
        channel.watchers += 1
        return channel

    def _leave(self, prefix: str, channel: _Channel) -> None:
        channel.watchers -= 1
        if channel.watchers == 0 and self._channels.get(prefix) is channel:
            del self._channels[prefix]
            n = len(prefix)
            self._lengths[n] -= 1
            if self._lengths[n] == 0:
                del self._lengths[n]
