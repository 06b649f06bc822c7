"""The scheduling queue: which pending pod to try next, and when to try a failed one again.

Upstream's `internal/queue.PriorityQueue`, with its three parts:

- activeQ: pods ready to be tried, highest `spec.priority` first, then the
  oldest (the time it was queued);
- backoffQ: pods that failed recently wait out a per-pod back-off, 1 s
  doubling with every attempt up to 10 s, then go back to activeQ;
- unschedulable pods: those no node could take wait for the cluster to change
  (a node added or updated, a pod deleted...: `move_all_to_active_or_backoff`)
  and are retried anyway after 5 minutes, the longest a pod waits.

A pod that failed while the cluster changed under its cycle would miss that
change, so a failure reported for a cycle older than the last move request
goes to backoffQ instead of waiting (upstream's `moveRequestCycle`). Pods with
`schedulingGates` are held, not tried, until an update removes the gates.
The clock is injectable and the flushes are plain methods, so behaviour is
testable without sleeping; `run_flushes` drives them on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nanokube.scheduler.nodeinfo import PodInfo

Obj = dict[str, Any]

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE_WAIT = 300.0
FLUSH_BACKOFF_INTERVAL = 0.2
FLUSH_UNSCHEDULABLE_INTERVAL = 30.0


@dataclass
class QueuedPod:
    pi: PodInfo
    timestamp: float  # when it was (re)queued: orders activeQ among equal priorities
    attempts: int = 0  # scheduling attempts so far (back-off doubles with each)
    initial_attempt: float | None = None
    cycle: int = 0  # the scheduling cycle of its last attempt
    gated: bool = False
    unschedulable_message: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return self.pi.key


class ShutDown(Exception):
    """The queue was closed."""


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._active: list[tuple[int, float, int, str]] = []  # (-priority, timestamp, seq, key)
        self._backoff: list[tuple[float, int, str]] = []  # (backoff expiry, seq, key)
        self._pods: dict[str, QueuedPod] = {}  # every queued pod, by key
        self._where: dict[str, str] = {}  # key -> "active" | "backoff" | "unschedulable"
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False
        # Popped pods not yet settled -> their newest version if updated meanwhile.
        self._in_flight: dict[str, PodInfo | None] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1

    # -- bookkeeping -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pods)

    def where(self, key: str) -> str:
        """ "active", "backoff", "unschedulable", or "" (not queued, or being scheduled)."""
        return self._where.get(key, "")

    def get(self, key: str) -> QueuedPod | None:
        return self._pods.get(key)

    def _push_active(self, qp: QueuedPod) -> None:
        self._pods[qp.key] = qp
        self._where[qp.key] = "active"
        heapq.heappush(self._active, (-qp.pi.priority, qp.timestamp, next(self._seq), qp.key))
        self._wakeup.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        self._pods[qp.key] = qp
        self._where[qp.key] = "backoff"
        heapq.heappush(self._backoff, (self.backoff_expiry(qp), next(self._seq), qp.key))

    def _park(self, qp: QueuedPod) -> None:
        self._pods[qp.key] = qp
        self._where[qp.key] = "unschedulable"

    def backoff_expiry(self, qp: QueuedPod) -> float:
        duration = INITIAL_BACKOFF * 2 ** max(qp.attempts - 1, 0)
        return qp.timestamp + min(duration, MAX_BACKOFF)

    def _backing_off(self, qp: QueuedPod) -> bool:
        return qp.attempts > 0 and self.backoff_expiry(qp) > self.clock()

    def _requeue(self, qp: QueuedPod) -> None:
        """Back to activeQ, or to backoffQ while its back-off lasts."""
        if self._backing_off(qp):
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    # -- informer events -------------------------------------------------------

    def add(self, pod: Obj) -> None:
        """A new pending pod."""
        pi = PodInfo(pod)
        if pi.key in self._pods:
            self.update(pod)
            return
        qp = QueuedPod(pi, self.clock(), gated=bool((pod.get("spec") or {}).get("schedulingGates")))
        if qp.gated:
            self._park(qp)
        else:
            self._push_active(qp)

    def update(self, pod: Obj) -> None:
        """A pending pod changed: a parked pod gets another try (its spec may fit now)."""
        pi = PodInfo(pod)
        qp = self._pods.get(pi.key)
        if qp is None:
            if pi.key in self._in_flight:
                self._in_flight[pi.key] = pi
            else:
                self.add(pod)
            return
        qp.pi = pi
        qp.gated = bool((pod.get("spec") or {}).get("schedulingGates"))
        if self._where.get(pi.key) == "unschedulable" and not qp.gated:
            self._requeue(qp)

    def delete(self, key: str) -> None:
        """Forget a pod (deleted, or assigned by someone else); heap entries go stale."""
        self._pods.pop(key, None)
        self._where.pop(key, None)
        self._in_flight.pop(key, None)

    def in_flight(self, key: str) -> bool:
        """Popped and not yet settled (being scheduled or bound)."""
        return key in self._in_flight

    def done(self, key: str) -> None:
        """The pod's attempt is settled: bound, or handed back through `add_*`."""
        self._in_flight.pop(key, None)

    # -- the scheduler's side ----------------------------------------------------

    async def pop(self) -> QueuedPod:
        """The next pod to schedule (waits for one); `ShutDown` once closed."""
        while True:
            if self._closed:
                raise ShutDown()
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                if self._where.get(key) != "active":
                    continue  # stale entry: deleted or moved since
                qp = self._pods.pop(key)
                del self._where[key]
                self._in_flight[key] = None
                self.scheduling_cycle += 1
                qp.cycle = self.scheduling_cycle
                qp.attempts += 1
                if qp.initial_attempt is None:
                    qp.initial_attempt = self.clock()
                return qp
            self._wakeup.clear()
            await self._wakeup.wait()

    def _settle(self, qp: QueuedPod) -> bool:
        """End the pod's flight; False when it was deleted meanwhile (nothing to requeue)."""
        if qp.key not in self._in_flight:
            return False
        newer = self._in_flight.pop(qp.key)
        if newer is not None:
            qp.pi = newer
            qp.cycle = -1  # changed during its attempt: goes to backoffQ, not to wait
        return True

    def add_unschedulable(self, qp: QueuedPod, message: str = "") -> None:
        """A pod no node could take: wait for a cluster change (or 5 minutes)."""
        if not self._settle(qp):
            return
        qp.timestamp = self.clock()
        qp.unschedulable_message = message
        if self.move_request_cycle >= qp.cycle:
            self._push_backoff(qp)
        else:
            self._park(qp)

    def add_backoff(self, qp: QueuedPod) -> None:
        """A pod whose attempt failed for another reason (binding): retry after its back-off."""
        if not self._settle(qp):
            return
        qp.timestamp = self.clock()
        self._push_backoff(qp)

    def move_all_to_active_or_backoff(self) -> None:
        """The cluster changed in a way that may let parked pods fit: try them again."""
        for key, where in list(self._where.items()):
            if where == "unschedulable":
                qp = self._pods[key]
                if not qp.gated:
                    self._requeue(qp)
        self.move_request_cycle = self.scheduling_cycle

    # -- flushes -----------------------------------------------------------------

    def flush_backoff_completed(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._where.get(key) == "backoff":
                self._push_active(self._pods[key])

    def flush_unschedulable_left_over(self) -> None:
        now = self.clock()
        for key, where in list(self._where.items()):
            if where == "unschedulable":
                qp = self._pods[key]
                if not qp.gated and now - qp.timestamp > MAX_UNSCHEDULABLE_WAIT:
                    self._requeue(qp)

    async def run_flushes(self) -> None:
        """Move pods whose back-off is over (often) and parked pods past 5 minutes (every 30 s)."""
        last_leftover = self.clock()
        while not self._closed:
            await asyncio.sleep(FLUSH_BACKOFF_INTERVAL)
            self.flush_backoff_completed()
            if self.clock() - last_leftover >= FLUSH_UNSCHEDULABLE_INTERVAL:
                last_leftover = self.clock()
                self.flush_unschedulable_left_over()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
