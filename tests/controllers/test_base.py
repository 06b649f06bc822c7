"""The controller base: keys from informer events reach `sync` once synced, a failing key
is retried with back-off, and one key is never reconciled by two workers at once."""

from __future__ import annotations

import asyncio
from typing import Any

from controller_harness import eventually, running

from nanokube.api.resources.core import CONFIG_MAP
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller

Obj = dict[str, Any]


class ConfigMapController(Controller):
    name = "configmap-test-controller"
    workers = 4

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        self.config_maps = self.watch(informers.informer(CONFIG_MAP))
        self.config_maps.add_event_handler(self.enqueue, lambda _old, new: self.enqueue(new))


async def test_failures_are_retried_and_keys_never_overlap(
    client: Client, informers: SharedInformerFactory
) -> None:
    controller = ConfigMapController(client, informers)
    calls: list[str] = []
    busy: set[str] = set()
    overlaps: list[str] = []

    async def sync(key: str) -> None:
        if key in busy:
            overlaps.append(key)
        busy.add(key)
        try:
            calls.append(key)
            await asyncio.sleep(0.01)
            if calls.count(key) == 1 and key.endswith("/flaky"):
                raise RuntimeError("first attempt fails")
        finally:
            busy.discard(key)

    controller.sync = sync
    async with running(informers, controller):
        await client.create(CONFIG_MAP, {"metadata": {"name": "flaky", "namespace": "default"}})
        for i in range(5):
            await client.patch(CONFIG_MAP, "flaky", {"data": {"n": str(i)}}, "default")

        async def retried() -> bool:
            return calls.count("default/flaky") >= 2

        await eventually(retried)
    assert not overlaps
