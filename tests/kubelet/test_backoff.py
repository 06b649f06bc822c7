"""CrashLoopBackOff timing rules: first restart at once, then base doubling to the cap,
counted from the last exit, forgotten after twice the cap without a crash."""

from __future__ import annotations

from nanokube.kubelet.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_restart_is_immediate_then_the_delay_doubles_to_the_cap():
    clock = Clock()
    b = Backoff(10, 40, clock)
    assert b.remaining("k", clock.now) == 0
    assert [b.next("k", clock.now) for _ in range(4)] == [10, 20, 40, 40]


def test_remaining_counts_from_the_exit():
    clock = Clock()
    b = Backoff(10, 300, clock)
    b.next("k", 1000)
    clock.now = 1004
    assert b.remaining("k", 1000) == 6
    clock.now = 1011
    assert b.remaining("k", 1000) == 0


def test_a_long_run_without_crash_resets_the_delay():
    clock = Clock()
    b = Backoff(10, 300, clock)
    for _ in range(5):
        b.next("k", clock.now)
    assert b.delay("k") == 160
    assert b.next("k", clock.now + 601) == 10


def test_keys_are_independent_and_forgotten_by_pod_prefix():
    b = Backoff(10, 300, Clock())
    b.next("uid1/a", 1000)
    b.next("uid2/a", 1000)
    b.forget_prefix("uid1/")
    assert b.delay("uid1/a") == 0 and b.delay("uid2/a") == 10
