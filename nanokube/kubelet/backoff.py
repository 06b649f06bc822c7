"""Per-key exponential back-off: CrashLoopBackOff and ImagePullBackOff.

The same rule as upstream's ``flowcontrol.Backoff`` as the kubelet uses it
(``kuberuntime_manager.go`` ``doBackOff``): a container that exits is restarted at
once the first time; each restart records the exit time and doubles the delay
(``base``, 2·base, ... capped at ``cap``); the next restart waits until that many
seconds after the *last exit*. An entry not touched for ``2 * cap`` seconds (the
container ran that long without crashing) is forgotten, so the delay starts over
at ``base``: with the defaults, 10 s doubling to 5 min and reset after 10 min.

Keys are strings the caller makes stable across restarts of a container (pod UID +
container name), so the back-off follows the container, not one instance of it.
State is in memory only: after an agent restart every container starts from
``base`` again, as upstream's does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BASE = 10.0
DEFAULT_CAP = 300.0


@dataclass
class _Entry:
    delay: float
    last_update: float  # the event time (a container's exit) the delay counts from


class Backoff:
    """Delays per key; times are epoch seconds, `clock` is injectable for tests."""

    def __init__(
        self,
        base: float = DEFAULT_BASE,
        cap: float = DEFAULT_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last_update > 2 * self.cap

    def remaining(self, key: str, event_time: float) -> float:
        """Seconds still to wait before acting on `key` again after `event_time`; 0 when
        it is not in back-off (upstream's ``IsInBackOffSince``)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return 0.0
        return max(0.0, event_time + entry.delay - self.clock())

    def delay(self, key: str) -> float:
        """The current delay of `key` (0 when it has none): what a message reports."""
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str, event_time: float) -> float:
        """Record an attempt after `event_time` and return the delay before the next one:
        `base` for a new or forgotten key, doubled otherwise, at most `cap`."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            entry = self._entries[key] = _Entry(self.base, event_time)
        else:
            entry.delay = min(entry.delay * 2, self.cap)
            entry.last_update = event_time
        return entry.delay

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key of a pod (keys start with its UID) once the pod is gone."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
