"""Helpers for controller tests: running controllers, polling, and a stand-in kubelet.

There is no scheduler or node agent in these tests, so `Kubelet` plays the node:
it writes pod status through `/status` (phase Running, Ready True, ready
container statuses), either for every pod it sees (`auto_ready`) or for the pods
a test names. `eventually` polls a condition, because controllers converge
asynchronously; it never asserts on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from nanokube.api import meta
from nanokube.api.resources.core import POD
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller

Obj = dict[str, Any]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def running(
    informers: SharedInformerFactory, *controllers: Controller
) -> AsyncIterator[None]:
    """Start the informers and the controllers; stop them on exit."""
    informers.start()
    for c in controllers:
        c.start()
    try:
        yield
    finally:
        for c in controllers:
            await c.stop()


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Poll `check` until it returns a truthy value (returned) or raises no AssertionError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
            failure: BaseException = AssertionError(f"{check} returned {result!r}")
        except AssertionError as e:
            failure = e
        if loop.time() > deadline:
            raise failure
        await asyncio.sleep(interval)


def ready_status(pod: Obj) -> Obj:
    now = meta.now_rfc3339()
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in containers
        ],
        "startTime": now,
    }


class Kubelet:
    """Marks pods Running and Ready through `/status`, as a node agent would."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.auto_ready = False
        self._task: asyncio.Task[None] | None = None

    async def ready(self, pods: Iterable[Obj]) -> None:
        for pod in pods:
            current = await self.client.get(POD, meta.name(pod), meta.namespace(pod))
            current["status"] = {**(current.get("status") or {}), **ready_status(current)}
            await self.client.update(POD, current, subresource="status")

    async def _run(self) -> None:
        async for etype, pod in self.client.watch(POD):
            if etype != "ADDED" or not self.auto_ready:
                continue
            with contextlib.suppress(Exception):
                await self.ready([pod])

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def pod_template(labels: dict[str, str], image: str = "nginx:1.25") -> Obj:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }
