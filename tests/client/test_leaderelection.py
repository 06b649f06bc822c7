"""Leader election on a Lease: one leader among two electors, the record upstream writes
(holder, MicroTime acquire/renew times, transitions), hand-over within the lease duration
when the leader is killed, release on a clean shutdown, losing the lease when it cannot be
renewed, and the configuration rule duration > deadline > 1.2 x retry period."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest
from client_support import LEASE, in_process

from nanokube.client.interface import Client
from nanokube.client.leaderelection import LeaderElectionConfig, LeaderElector

MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def config(identity: str, **kw: float) -> LeaderElectionConfig:
    timing = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1, **kw}
    return LeaderElectionConfig("controllers", identity, "kube-system", **timing)  # type: ignore[arg-type]


class Candidate:
    """An elector running in a task, recording when it leads."""

    def __init__(self, client: Client, identity: str, **kw: float) -> None:
        self.elector = LeaderElector(client, config(identity, **kw), lease_kind=LEASE)
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task = asyncio.create_task(self.elector.run(self._lead, self.stopped.set))

    async def _lead(self) -> None:
        self.leading.set()
        await asyncio.Event().wait()  # lead until cancelled

    async def kill(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def first_of(*candidates: Candidate, timeout: float = 5.0) -> Candidate:
    waits = {asyncio.create_task(c.leading.wait()): c for c in candidates}
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    assert done, "nobody became leader"
    return waits[done.pop()]


async def test_only_one_of_two_leads_and_writes_upstreams_record(any_client: Client) -> None:
    a, b = Candidate(any_client, "a"), Candidate(any_client, "b")
    try:
        leader = await first_of(a, b)
        other = b if leader is a else a
        await asyncio.sleep(0.5)  # several retry periods
        assert not other.leading.is_set() and not other.elector.is_leader
        assert other.elector.leader == leader.elector.config.identity
        lease = await any_client.get(LEASE, "controllers", "kube-system")
        spec = lease["spec"]
        assert spec["holderIdentity"] == leader.elector.config.identity
        assert spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 0
        assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])
        assert spec["renewTime"] > spec["acquireTime"]  # renewed since acquired
    finally:
        await a.kill()
        await b.kill()


async def test_killed_leader_hands_over_within_the_lease_duration(server) -> None:
    client = in_process(server)
    a = Candidate(client, "a")
    await first_of(a)
    b = Candidate(client, "b")
    await asyncio.sleep(0.3)
    # Killed without releasing: as if the process died.
    a.elector.config.release_on_cancel = False
    await a.kill()
    try:
        await first_of(b, timeout=5)
        lease = await client.get(LEASE, "controllers", "kube-system")
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        await b.kill()


async def test_clean_shutdown_releases_the_lease(server) -> None:
    client = in_process(server)
    a = Candidate(client, "a", lease_duration=30.0, renew_deadline=20.0)
    await first_of(a)
    await a.kill()
    assert a.stopped.is_set()
    lease = await client.get(LEASE, "controllers", "kube-system")
    assert lease["spec"].get("holderIdentity", "") == ""
    # A successor does not wait out the 30 s lease.
    b = Candidate(client, "b", lease_duration=30.0, renew_deadline=20.0)
    try:
        await first_of(b, timeout=3)
    finally:
        await b.kill()


async def test_leader_that_cannot_renew_stops_leading(server) -> None:
    client = in_process(server)
    a = Candidate(client, "a")
    await first_of(a)
    # Someone else takes the lease over behind the leader's back.
    lease = await client.get(LEASE, "controllers", "kube-system")
    lease["spec"]["holderIdentity"] = "intruder"
    await client.update(LEASE, lease)
    await asyncio.wait_for(a.stopped.wait(), 3)
    await asyncio.wait_for(a.task, 1)  # run() returns once leadership is lost
    assert not a.elector.is_leader


def test_config_rule() -> None:
    with pytest.raises(ValueError):
        LeaderElectionConfig("x", "me", lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        LeaderElectionConfig("x", "me", lease_duration=15, renew_deadline=2, retry_period=2)
    LeaderElectionConfig("x", "me")  # upstream's defaults are valid
