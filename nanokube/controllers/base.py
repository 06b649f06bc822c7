"""The shape every controller shares: informers → work queue → `reconcile(key)`.

A controller subclass, in its constructor, asks the shared informer factory for
the informers it watches and registers event handlers on them; handlers only
put keys (`namespace/name`) on the controller's work queue. `run()` waits until
those informers have listed once, then runs `workers` tasks that each take a
key, call `self.sync(key)` (which is `reconcile` unless a test replaces it) and
report the outcome to the queue: success forgets the key's back-off, an
exception puts the key back after its rate-limited back-off. The queue never
hands one key to two workers, so `reconcile` may assume it is alone with its
object.

`reconcile` reads the informer caches, compares desired with observed state,
makes one step and returns; it is level-triggered, so running it again
without a change does nothing.

`PodOwnerController` adds what the controllers whose objects own pods
(ReplicaSet, DaemonSet, StatefulSet, Job) share: expectations, reading the
owner (forgetting its expectations once it is gone), its selector, deleting
pods with the deletions expected first, and coming back when a pod's
`minReadySeconds` have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.core import POD
from nanokube.client.cache import key_of, split_key
from nanokube.client.events import EventRecorder
from nanokube.client.informer import Informer, SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.client.workqueue import ShutDown, WorkQueue
from nanokube.controllers import pods
from nanokube.controllers.expectations import Expectations

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Controller:
    """A named reconcile loop over one work queue; subclasses implement `reconcile`."""

    # The controller's name, as upstream names it ("replicaset-controller"): the
    # event source and the queue name.
    name = "controller"
    # How many keys are reconciled at once (upstream's --concurrent-*-syncs).
    workers = 2

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        # All writes go through the client; reads come from the informers.
        self.client = client
        self.informers = informers
        # The informers this controller waits for before its first reconcile.
        self.watched: list[Informer] = []
        self.queue: WorkQueue[str] = WorkQueue(self.name)
        self.events = EventRecorder(client, self.name)
        # What a worker calls for each key: an attribute, so a test can replace it.
        self.sync: Callable[[str], Awaitable[None]] = self.reconcile
        self._task: asyncio.Task[None] | None = None

    def watch(self, informer: Informer) -> Informer:
        """Note that this controller needs `informer` synced before it starts."""
        self.watched.append(informer)
        return informer

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    # -- enqueueing (called from informer handlers) -----------------------------

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_after(self, obj: Obj, delay: float) -> None:
        self.queue.add_after(key_of(obj), delay)

    def cached_copy(self, informer: Informer, key: str) -> Obj | None:
        """A copy of the cached object of `key` for reconcile to work on, or None when gone.

        The cache's objects are shared by every controller: they are never edited.
        """
        namespace, name = split_key(key)
        cached = informer.get(name, namespace)
        return copy_json(cached) if cached is not None else None

    def enqueue_events(self, informer: Informer, expectations: Expectations | None = None) -> None:
        """Reconcile `informer`'s objects (the kind this controller owns) on every event.

        A delete is enqueued too (reconcile finds the object gone and forgets
        it); it drops what the controller expected of the object, as does an
        update with another uid (deleted and recreated between two watches),
        so a new object never waits for its predecessor's pods.
        """

        def updated(old: Obj, new: Obj) -> None:
            if expectations is not None and old["metadata"].get("uid") != new["metadata"].get(
                "uid"
            ):
                expectations.forget(key_of(old))
            self.enqueue(new)

        def deleted(obj: Obj) -> None:
            if expectations is not None:
                expectations.forget(key_of(obj))
            self.enqueue(obj)

        informer.add_event_handler(self.enqueue, updated, deleted)

    # -- running ------------------------------------------------------------

    def work_queues(self) -> list[tuple[WorkQueue[str], Callable[[str], Awaitable[None]] | None]]:
        """Each queue with the function its workers run (None: `self.sync`).

        One queue is the rule; the garbage collector adds a second (orphaning).
        """
        return [(self.queue, None)]

    async def run(self) -> None:
        """Wait for the informers, then reconcile keys until cancelled."""
        for informer in self.watched:
            await informer.wait_for_sync()
        log.info("controller started controller=%s workers=%d", self.name, self.workers)
        queues = self.work_queues()
        try:
            async with asyncio.TaskGroup() as group:
                for queue, sync in queues:
                    for i in range(self.workers):
                        group.create_task(self._worker(queue, sync), name=f"{self.name}-{i}")
        finally:
            for queue, _ in queues:
                queue.shutdown()

    def start(self) -> asyncio.Task[None]:
        """Run in a task of the current loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)
        return self._task

    async def stop(self) -> None:
        for queue, _ in self.work_queues():
            queue.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.events.close()

    async def _worker(
        self,
        queue: WorkQueue[str] | None = None,
        sync: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Take keys from `queue` (the controller's own by default) and run `sync` on each."""
        queue = queue if queue is not None else self.queue
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await (sync if sync is not None else self.sync)(key)
            except asyncio.CancelledError:
                raise
            except errors.Conflict as e:
                # A stale read: normal under concurrency, retried quietly.
                log.debug("reconcile conflict controller=%s key=%s error=%s", self.name, key, e)
                queue.add_rate_limited(key)
            except Exception as e:  # noqa: BLE001 - one object's failure must not stop the loop
                log.warning(
                    "reconcile failed controller=%s key=%s error=%r retries=%d",
                    self.name,
                    key,
                    e,
                    queue.num_requeues(key),
                )
                log.debug("reconcile failure", exc_info=True)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)


async def run_all(writes: Iterable[Awaitable[None]]) -> None:
    """Run `writes` at once; when all have finished, raise the first failure.

    One failing write must not cancel the others: each that succeeded is
    already in the API, and its event and expectation already counted.
    """
    for result in await asyncio.gather(*writes, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class PodOwnerController(Controller):
    """A controller whose objects own pods; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # Pod creates and deletes asked for and not yet seen, by owner key.
        self.expectations = Expectations()

    def cached_owner(self, owners: Informer, key: str) -> Obj | None:
        """A copy of the cached owner to work on; None when it is gone (expectations dropped)."""
        owner = self.cached_copy(owners, key)
        if owner is None:
            self.expectations.forget(key)
        return owner

    def owner_selector(self, owner: Obj, key: str) -> selectors.LabelSelector | None:
        """The owner's pod selector, or None (logged) when it does not parse: nothing to do."""
        try:
            return selectors.label_selector_from_object((owner.get("spec") or {}).get("selector"))
        except errors.StatusError as e:
            log.warning("invalid selector controller=%s object=%s error=%s", self.name, key, e)
            return None

    def requeue_for_availability(self, key: str, owner: Obj, owned: list[Obj]) -> None:
        """Come back when the next ready pod has been ready for `minReadySeconds`.

        Availability changes with time alone, with no event to tell: without
        this, `availableReplicas` would wait for an unrelated event.
        """
        min_ready = (owner.get("spec") or {}).get("minReadySeconds") or 0
        waits = [w for p in owned if (w := pods.available_in(p, min_ready)) is not None]
        if waits:
            self.queue.add_after(key, min(waits) + 0.1)

    async def delete_pod(
        self, key: str, pod: Obj, before: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Delete one pod whose deletion `key` expects; False when it was gone already.

        The uid precondition spares a pod recreated under the same name. When
        the delete (or the `before` step) fails, the deletion is ticked off at
        once, since no event will come for it, and the error is raised.
        """
        try:
            if before is not None:
                await before()
            await self.client.delete(
                POD,
                meta.name(pod),
                meta.namespace(pod),
                preconditions={"uid": pod["metadata"]["uid"]},
            )
        except errors.StatusError as e:
            self.expectations.deletion_observed(key, key_of(pod))
            if isinstance(e, errors.NotFound):
                return False
            raise
        return True

    async def delete_pods(self, owner: Obj, key: str, victims: list[Obj]) -> None:
        """Delete `victims` at once, every deletion expected first (upstream's `DeletePod`).

        Each outcome is an event on the owner (`SuccessfulDelete`,
        `FailedDelete`); the first failure is raised once all are done.
        """
        self.expectations.expect_deletions(key, [key_of(p) for p in victims])

        async def delete_one(pod: Obj) -> None:
            try:
                if not await self.delete_pod(key, pod):
                    return
            except errors.StatusError as e:
                self.events.warning(owner, "FailedDelete", f"Error deleting: {e.message}")
                raise
            self.events.normal(owner, "SuccessfulDelete", f"Deleted pod: {meta.name(pod)}")

        await run_all(delete_one(p) for p in victims)
