"""Fixtures for the storage tests: every backend behind one factory, a fresh store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from nanokube.storage.memory import MemoryStore
from nanokube.storage.sqlite import SqliteStore
from nanokube.storage.store import Store

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite"])
async def make_store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StoreFactory]:
    """Builds stores of the parametrized backend (keyword arguments go to its constructor)."""
    made: list[Store] = []

    def make(**kwargs: int) -> Store:
        if request.param == "memory":
            store: Store = MemoryStore(**kwargs)
        else:
            store = SqliteStore(tmp_path / f"db{len(made)}" / "state.db", **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()
