"""Informers over both clients: the first list (has_synced), add/update/delete handlers,
extra indexes, recovery from a cut-off watch and from 410 by relisting (adds and deletes
missed meanwhile), restarting a watch the server ended from the last revision without a
relist, periodic resync, handlers added late, and the shared factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from client_support import CONFIG_MAP, POD

from nanokube.client.cache import by_node_name
from nanokube.client.informer import Informer, SharedInformerFactory
from nanokube.client.interface import Client

CM_PREFIX = "/registry/configmaps/"


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def cm(name: str, **data: str) -> dict:
    return {"metadata": {"name": name}, "data": data}


class Recorder:
    def __init__(self, informer: Informer) -> None:
        self.events: list[tuple[str, str]] = []
        informer.add_event_handler(
            on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            on_update=lambda old, new: self.events.append(("update", new["metadata"]["name"])),
            on_delete=lambda o: self.events.append(("delete", o["metadata"]["name"])),
        )


async def test_list_then_add_update_delete(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("before"), "default")
    informer = Informer(any_client, CONFIG_MAP, "default")
    seen = Recorder(informer)
    informer.start()
    try:
        assert await informer.wait_for_sync(5)
        assert informer.has_synced and seen.events == [("add", "before")]
        created = await any_client.create(CONFIG_MAP, cm("x", a="1"), "default")
        created["data"] = {"a": "2"}
        await any_client.update(CONFIG_MAP, created)
        await any_client.delete(CONFIG_MAP, "x", "default")
        await eventually(lambda: len(seen.events) == 4)
        assert seen.events[1:] == [("add", "x"), ("update", "x"), ("delete", "x")]
        assert informer.get("x", "default") is None
        assert [o["metadata"]["name"] for o in informer.list()] == ["before"]
        assert informer.relists == 1
    finally:
        await informer.stop()


async def test_update_handler_gets_old_and_new(any_client: Client) -> None:
    informer = Informer(any_client, CONFIG_MAP, "default")
    pairs: list[tuple[dict, dict]] = []
    informer.add_event_handler(on_update=lambda old, new: pairs.append((old["data"], new["data"])))
    informer.start()
    try:
        await informer.wait_for_sync(5)
        obj = await any_client.create(CONFIG_MAP, cm("u", v="1"), "default")
        obj["data"] = {"v": "2"}
        await any_client.update(CONFIG_MAP, obj)
        await eventually(lambda: len(pairs) == 1)
        assert pairs == [({"v": "1"}, {"v": "2"})]
    finally:
        await informer.stop()


async def test_extra_index_by_node_name(any_client: Client) -> None:
    informer = Informer(any_client, POD, indexers={"node": by_node_name})
    informer.start()
    try:
        await informer.wait_for_sync(5)
        for name, node in (("a", "n1"), ("b", "n1"), ("c", "n2")):
            spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
            await any_client.create(POD, {"metadata": {"name": name}, "spec": spec}, "default")
        await eventually(lambda: len(informer.list()) == 3)
        assert sorted(p["metadata"]["name"] for p in informer.by_index("node", "n1")) == ["a", "b"]
    finally:
        await informer.stop()


def cut_off(server) -> None:
    """What the watch cache does to a watcher that falls behind: no more events, then None."""
    for watcher in server.cache.prefix(CM_PREFIX).watchers:
        watcher.cut_off = True


def wake_cut_off(server) -> None:
    for watcher in server.cache.prefix(CM_PREFIX).watchers:
        watcher.queue.put_nowait(None)


async def test_cut_off_watch_relists_and_catches_up(any_client: Client, server) -> None:
    await any_client.create(CONFIG_MAP, cm("stays"), "default")
    await any_client.create(CONFIG_MAP, cm("goes"), "default")
    informer = Informer(any_client, CONFIG_MAP, "default")
    informer.min_backoff = 0.05  # cut off before any event: the informer backs off first
    seen = Recorder(informer)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await eventually(lambda: len(server.cache.prefix(CM_PREFIX).watchers) == 1)
        cut_off(server)
        # Missed by the watch: only the relist can tell the informer.
        await any_client.create(CONFIG_MAP, cm("new"), "default")
        await any_client.delete(CONFIG_MAP, "goes", "default")
        changed = await any_client.get(CONFIG_MAP, "stays", "default")
        changed["data"] = {"changed": "yes"}
        await any_client.update(CONFIG_MAP, changed)
        wake_cut_off(server)
        await eventually(lambda: informer.relists == 2 and len(seen.events) == 5)
        assert sorted(seen.events[2:]) == [("add", "new"), ("delete", "goes"), ("update", "stays")]
        # and it watches again
        await any_client.create(CONFIG_MAP, cm("after"), "default")
        await eventually(lambda: informer.get("after", "default") is not None)
    finally:
        await informer.stop()


async def test_410_on_rewatch_relists_after_a_backoff(any_client: Client, server) -> None:
    informer = Informer(any_client, CONFIG_MAP, "default")
    informer.min_backoff = 0.05
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await eventually(lambda: len(server.cache.prefix(CM_PREFIX).watchers) == 1)
        pc = server.cache.prefix(CM_PREFIX)
        saved, pc.window_start = pc.window_start, 10**9  # every revision is now "too old"
        cut_off(server)
        await any_client.create(CONFIG_MAP, cm("missed"), "default")
        wake_cut_off(server)
        await eventually(lambda: informer.relists >= 3)
        pc.window_start = saved
        await eventually(lambda: informer.get("missed", "default") is not None)
        await any_client.create(CONFIG_MAP, cm("watched"), "default")
        await eventually(lambda: informer.get("watched", "default") is not None)
    finally:
        await informer.stop()


async def test_server_ended_watch_restarts_from_last_revision(any_client: Client, server) -> None:
    informer = Informer(any_client, CONFIG_MAP, "default")
    informer.watch_timeout = lambda: 1
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await asyncio.sleep(1.3)  # the first watch has ended and another begun
        await any_client.create(CONFIG_MAP, cm("later"), "default")
        await eventually(lambda: informer.get("later", "default") is not None)
        assert informer.relists == 1
    finally:
        await informer.stop()


async def test_resync_redelivers_cached_objects_as_updates(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("r"), "default")
    informer = Informer(any_client, CONFIG_MAP, "default", resync_period=0.05)
    updates: list[str] = []
    informer.add_event_handler(on_update=lambda old, new: updates.append(new["metadata"]["name"]))
    informer.start()
    try:
        await eventually(lambda: updates.count("r") >= 2)
    finally:
        await informer.stop()


async def test_handler_added_late_sees_the_cache_as_adds(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("early"), "default")
    informer = Informer(any_client, CONFIG_MAP, "default")
    informer.start()
    try:
        await informer.wait_for_sync(5)
        seen = Recorder(informer)
        assert seen.events == [("add", "early")]
    finally:
        await informer.stop()


async def test_a_failing_handler_does_not_stop_the_others(any_client: Client) -> None:
    informer = Informer(any_client, CONFIG_MAP, "default")

    def broken(obj: dict) -> None:
        raise RuntimeError("bug")

    informer.add_event_handler(on_add=broken)
    seen = Recorder(informer)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await any_client.create(CONFIG_MAP, cm("ok"), "default")
        await eventually(lambda: ("add", "ok") in seen.events)
    finally:
        await informer.stop()


async def test_factory_shares_one_informer_per_kind(any_client: Client, server) -> None:
    async with SharedInformerFactory(any_client) as factory:
        first = factory.informer(CONFIG_MAP)
        second = factory.informer(CONFIG_MAP, indexers={"node": by_node_name})
        pods = factory.informer(POD)
        assert first is second and first is not pods
        assert factory.informer(CONFIG_MAP, namespace="default") is not first
        factory.start()
        assert await factory.wait_for_cache_sync(5)
        await eventually(lambda: len(server.cache.prefix(CM_PREFIX).watchers) == 2)
        assert first.has_synced and pods.has_synced
    assert server.cache.watcher_count() <= 3
