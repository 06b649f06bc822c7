"""Expectations: what a controller has asked for and not yet seen in its informers.

A controller that creates pods reads them back from its informer cache, which
lags the API by one watch event. Without care, the next reconcile (triggered by
the very first pod event) would see too few pods and create more. Upstream's
answer (`pkg/controller/controller_utils.go`) is kept here: before creating N
pods a controller records "expect N creations"; each pod ADDED event ticks one
off; nothing more is created or deleted for that owner until the count reaches
zero, or five minutes pass (a lost event must not block the owner forever).
Deletions are tracked by pod key, so that a pod seen going away twice (marked,
then removed) is counted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# upstream's ExpectationsTimeout: after this, an owner is resynced whatever it still expects.
EXPECTATIONS_TIMEOUT = 5 * 60.0


@dataclass
class _Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    # monotonic time of the last expectation set, for the timeout
    timestamp: float = field(default_factory=time.monotonic)

    def fulfilled(self) -> bool:
        return self.adds <= 0 and not self.deletes


class Expectations:
    """Per-owner counts of pending creations and keys of pending deletions."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.timeout = timeout
        self._by_owner: dict[str, _Expectation] = {}

    def satisfied(self, owner_key: str) -> bool:
        """True when the owner may act again: nothing pending, never recorded, or expired."""
        exp = self._by_owner.get(owner_key)
        if exp is None or exp.fulfilled():
            return True
        if time.monotonic() - exp.timestamp > self.timeout:
            log.info(
                "expectations expired owner=%s adds=%d deletes=%d",
                owner_key,
                exp.adds,
                len(exp.deletes),
            )
            return True
        return False

    def expect_creations(self, owner_key: str, count: int) -> None:
        """Record, before creating, that `count` objects are about to appear (replaces old counts)."""
        self._by_owner[owner_key] = _Expectation(adds=count)

    def expect_deletions(self, owner_key: str, keys: Iterable[str]) -> None:
        """Record, before deleting, the keys of the objects about to go."""
        self._by_owner[owner_key] = _Expectation(deletes=set(keys))

    def creation_observed(self, owner_key: str, count: int = 1) -> None:
        """Tick off `count` creations: seen in the informer, or given up on (the create failed)."""
        exp = self._by_owner.get(owner_key)
        if exp is not None:
            exp.adds = max(exp.adds - count, 0)

    def deletion_observed(self, owner_key: str, key: str) -> None:
        """Tick off `key`; a delete of something not expected changes nothing."""
        exp = self._by_owner.get(owner_key)
        if exp is not None:
            exp.deletes.discard(key)

    def forget(self, owner_key: str) -> None:
        """The owner is gone: drop what it expected."""
        self._by_owner.pop(owner_key, None)
