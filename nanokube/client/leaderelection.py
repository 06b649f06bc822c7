"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`.

With several servers, one of them runs the controllers and the scheduler. Each
candidate tries to write its identity into the Lease's `holderIdentity`; the
compare-and-swap on resourceVersion lets one win. The leader renews
`renewTime` every `retry_period`; if it cannot renew for `renew_deadline` it
stops leading (its callback is cancelled) before its lease can expire for the
others. A candidate takes the lease over once it has seen the same record,
unchanged, for `lease_duration`: the expiry is measured on the candidate's own
clock from when it last saw the record change, never from the timestamps in
it, so clock skew between machines does not matter (upstream's rule).

Defaults are upstream's: lease duration 15 s, renew deadline 10 s, retry
period 2 s. On a clean shutdown (the elector is cancelled) the leader
releases the lease (empty holder, duration 1 s), so a successor takes over
at its next retry instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind
from nanokube.client import kinds
from nanokube.client.interface import Client, Obj

log = logging.getLogger(__name__)

JITTER = 1.2  # upstream's JitterFactor: retries are spread over [period, 2.2 * period)


@dataclass
class LeaderElectionConfig:
    name: str
    identity: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > 1.2 * retry_period > 0 (upstream's rule)"
            )
        if not self.identity:
            raise ValueError("leader election needs an identity")


def _lease_kind() -> Kind:
    kind = kinds.by_kind("coordination.k8s.io/v1", "Lease")
    if kind is None:
        raise LookupError("the Lease kind (coordination.k8s.io/v1) is not declared")
    return kind


class LeaderElector:
    """Campaigns for one Lease; `run(callback)` leads while the callback runs."""

    def __init__(
        self,
        client: Client,
        config: LeaderElectionConfig,
        *,
        lease_kind: Kind | None = None,
        on_new_leader: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.kind = lease_kind or _lease_kind()
        self.on_new_leader = on_new_leader
        # The record as last seen, and when (our monotonic clock) it last changed.
        self._observed: Obj = {}
        self._observed_at = 0.0
        self._observed_rv = ""
        self.leader = ""  # the holder last observed
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def run(
        self,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], Any] | None = None,
    ) -> None:
        """Acquire the lease, run `on_started_leading()` while renewing it, and return when
        leadership is lost (the callback is then cancelled) or the callback returns.

        Cancelling `run` cancels the callback and releases the lease (with
        `release_on_cancel`). `on_stopped_leading` is called whenever leading ends, but,
        unlike upstream, not when `run` is cancelled before it ever led.
        """
        async with self.leading() as lost:
            work = asyncio.create_task(on_started_leading(), name="leader-work")
            lost_wait = asyncio.create_task(lost.wait())
            try:
                await asyncio.wait({work, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (work, lost_wait):
                    t.cancel()
                for t in (work, lost_wait):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                if on_stopped_leading is not None:
                    on_stopped_leading()
            if work.done() and not work.cancelled() and work.exception() is not None:
                raise work.exception()  # type: ignore[misc]

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[asyncio.Event]:
        """Wait to acquire the lease, then keep renewing it while the body runs.

        Yields an event that is set if leadership is lost; the body should stop then.
        On exit the renewals stop and the lease is released (when configured).
        """
        await self._acquire()
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew_loop(lost), name="leader-renew")
        try:
            yield lost
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if self._leading and self.config.release_on_cancel:
                await asyncio.shield(self._release())
            self._leading = False

    async def _acquire(self) -> None:
        log.info("attempting to acquire lease lease=%s/%s", self.config.namespace, self.config.name)
        while not await self._try_acquire_or_renew():
            await asyncio.sleep(self.config.retry_period * random.uniform(1.0, 1.0 + JITTER))
        log.info(
            "acquired lease lease=%s/%s identity=%s",
            self.config.namespace,
            self.config.name,
            self.config.identity,
        )

    async def _renew_loop(self, lost: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_renew = loop.time()
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.retry_period)
            remaining = cfg.renew_deadline - (loop.time() - last_renew)
            renewed = False
            if remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._try_acquire_or_renew()
                except TimeoutError:
                    renewed = False
            if renewed:
                last_renew = loop.time()
            elif loop.time() - last_renew >= cfg.renew_deadline:
                log.warning("failed to renew lease lease=%s/%s", cfg.namespace, cfg.name)
                self._leading = False
                lost.set()
                return

    def _record(self, acquire_time: str, transitions: int) -> Obj:
        now = meta.now_micro()
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt, as upstream's tryAcquireOrRenew; False when someone else holds it."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            try:
                lease = await self.client.get(self.kind, cfg.name, cfg.namespace)
            except errors.NotFound:
                spec = self._record("", 0)
                body = {"metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": spec}
                created = await self.client.create(self.kind, body, cfg.namespace)
                self._observe(created, loop.time())
                self._leading = True
                return True
            spec = lease.get("spec") or {}
            if spec != self._observed:
                self._observe(lease, loop.time())
            holder = spec.get("holderIdentity") or ""
            duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
            mine = holder == cfg.identity
            if holder and not mine and self._observed_at + duration > loop.time():
                self._leading = False
                return False
            if mine:
                new_spec = self._record(
                    spec.get("acquireTime") or "", spec.get("leaseTransitions") or 0
                )
            else:
                new_spec = self._record("", (spec.get("leaseTransitions") or 0) + 1)
            lease["spec"] = {**spec, **new_spec}
            updated = await self.client.update(self.kind, lease)
        except errors.Conflict:
            return False  # someone else wrote first
        except Exception as e:  # noqa: BLE001 - API or connection failure: retry next period
            log.warning("lease attempt failed lease=%s/%s error=%r", cfg.namespace, cfg.name, e)
            return False
        self._observe(updated, loop.time())
        self._leading = True
        return True

    def _observe(self, lease: Obj, at: float) -> None:
        spec = lease.get("spec") or {}
        self._observed = spec
        self._observed_at = at
        holder = spec.get("holderIdentity") or ""
        if holder != self.leader:
            self.leader = holder
            if self.on_new_leader is not None and holder:
                self.on_new_leader(holder)

    async def _release(self) -> None:
        """Give the lease up: empty holder, so a successor need not wait for it to expire."""
        cfg = self.config
        try:
            lease = await self.client.get(self.kind, cfg.name, cfg.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != cfg.identity:
                return
            now = meta.now_micro()
            lease["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
            }
            await self.client.update(self.kind, lease)
            log.info("released lease lease=%s/%s", cfg.namespace, cfg.name)
        except Exception as e:  # noqa: BLE001 - best effort: the lease expires anyway
            log.warning("failed to release lease lease=%s/%s error=%r", cfg.namespace, cfg.name, e)
