"""The scheduling queue: priority order, back-off, waiting for cluster changes, 5-minute retry."""

from __future__ import annotations

from sched_helpers import make_pod

from nanokube.scheduler.queue import MAX_UNSCHEDULABLE_WAIT, SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue() -> tuple[SchedulingQueue, Clock]:
    clock = Clock()
    return SchedulingQueue(clock), clock


async def test_higher_priority_first_then_oldest() -> None:
    q, clock = queue()
    q.add(make_pod("low-old", priority=0))
    clock.now += 1
    q.add(make_pod("high", priority=100))
    clock.now += 1
    q.add(make_pod("low-new", priority=0))
    order = [(await q.pop()).pi.name for _ in range(3)]
    assert order == ["high", "low-old", "low-new"]


async def test_unschedulable_pods_wait_for_a_cluster_change() -> None:
    q, clock = queue()
    q.add(make_pod("p"))
    qp = await q.pop()
    q.add_unschedulable(qp, "0/1 nodes are available")
    assert q.where("default/p") == "unschedulable"
    clock.now += 5  # past its 1 s back-off
    q.move_all_to_active_or_backoff()
    assert q.where("default/p") == "active"


async def test_a_change_during_back_off_goes_through_backoff_q() -> None:
    q, clock = queue()
    q.add(make_pod("p"))
    q.add_unschedulable(await q.pop())
    q.move_all_to_active_or_backoff()  # still inside its 1 s back-off
    assert q.where("default/p") == "backoff"
    clock.now += 0.5
    q.flush_backoff_completed()
    assert q.where("default/p") == "backoff"
    clock.now += 0.6
    q.flush_backoff_completed()
    assert q.where("default/p") == "active"


async def test_back_off_doubles_up_to_ten_seconds() -> None:
    q, clock = queue()
    q.add(make_pod("p"))
    durations = []
    for _ in range(6):
        qp = await q.pop()
        q.add_backoff(qp)
        durations.append(q.backoff_expiry(qp) - clock.now)
        clock.now += 60
        q.flush_backoff_completed()
    assert durations == [1, 2, 4, 8, 10, 10]


async def test_a_cluster_change_during_the_attempt_is_not_missed() -> None:
    q, clock = queue()
    q.add(make_pod("p"))
    qp = await q.pop()
    q.move_all_to_active_or_backoff()  # e.g. a node was added while the cycle ran
    q.add_unschedulable(qp)
    assert q.where("default/p") == "backoff"


async def test_parked_pods_are_retried_after_five_minutes() -> None:
    q, clock = queue()
    q.add(make_pod("p"))
    q.add_unschedulable(await q.pop())
    clock.now += MAX_UNSCHEDULABLE_WAIT - 1
    q.flush_unschedulable_left_over()
    assert q.where("default/p") == "unschedulable"
    clock.now += 2
    q.flush_unschedulable_left_over()
    assert q.where("default/p") == "active"


async def test_an_update_retries_a_parked_pod_and_delete_forgets_it() -> None:
    q, clock = queue()
    q.add(make_pod("p", cpu="8"))
    q.add_unschedulable(await q.pop())
    clock.now += 5
    q.update(make_pod("p", cpu="1"))
    assert q.where("default/p") == "active"
    assert q.get("default/p").pi.req.cpu == 1000  # type: ignore[union-attr]
    q.delete("default/p")
    assert q.where("default/p") == "" and len(q) == 0


async def test_deleted_while_being_scheduled_is_not_requeued() -> None:
    q, _ = queue()
    q.add(make_pod("p"))
    qp = await q.pop()
    q.delete("default/p")
    q.add_unschedulable(qp)
    assert len(q) == 0


async def test_gated_pods_are_held_until_the_gates_are_removed() -> None:
    q, _ = queue()
    q.add(make_pod("p", schedulingGates=[{"name": "wait"}]))
    q.move_all_to_active_or_backoff()
    assert q.where("default/p") == "unschedulable"
    q.update(make_pod("p"))
    assert q.where("default/p") == "active"
