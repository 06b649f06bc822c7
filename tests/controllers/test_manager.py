"""The controller manager: builds every controller over shared informers and runs them."""

from __future__ import annotations

import pytest
from controller_harness import eventually, pod_template

from nanokube.api import errors
from nanokube.api.resources.apps import DEPLOYMENT
from nanokube.api.resources.core import NAMESPACE, POD, SERVICE_ACCOUNT
from nanokube.client.interface import Client
from nanokube.controllers.manager import ControllerManager, ControllerManagerOptions, configured

CLIENTS = ("in-process", "http")  # every test runs over both clients


async def test_runs_every_controller(client: Client) -> None:
    manager = ControllerManager(client)
    assert set(manager.controllers) == set(configured(ControllerManagerOptions()))
    manager.start()
    try:
        assert await manager.wait_for_sync(timeout=10)
        await client.create(NAMESPACE, {"metadata": {"name": "demo"}})
        labels = {"app": "web"}
        await client.create(
            DEPLOYMENT,
            {
                "metadata": {"name": "web", "namespace": "demo"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": pod_template(labels),
                },
            },
        )

        async def running() -> bool:
            pods = (await client.list(POD, "demo"))["items"]
            accounts = (await client.list(SERVICE_ACCOUNT, "demo"))["items"]
            return len(pods) == 2 and [a["metadata"]["name"] for a in accounts] == ["default"]

        await eventually(running)
        await client.delete(NAMESPACE, "demo")

        async def gone() -> bool:
            try:
                await client.get(NAMESPACE, "demo")
            except errors.NotFound:
                return True
            return False

        await eventually(gone)
    finally:
        await manager.stop()


def test_unknown_controllers_are_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="unknown controllers: nope"):
        ControllerManager(client, enabled=["replicaset", "nope"])
