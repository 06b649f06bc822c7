"""The service account controller: a `default` ServiceAccount in every active namespace,
recreated when deleted, none in a namespace being deleted."""

from __future__ import annotations

from controller_harness import eventually, running

from nanokube.api import errors
from nanokube.api.resources.core import NAMESPACE, SERVICE_ACCOUNT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.serviceaccount import ServiceAccountController

CLIENTS = ("in-process", "http")  # every test runs over both clients


async def has_default(client: Client, namespace: str) -> bool:
    try:
        await client.get(SERVICE_ACCOUNT, "default", namespace)
    except errors.NotFound:
        return False
    return True


async def test_every_namespace_gets_a_default_service_account(
    client: Client, informers: SharedInformerFactory
) -> None:
    async with running(informers, ServiceAccountController(client, informers)):
        await client.create(NAMESPACE, {"metadata": {"name": "team"}})

        async def created() -> bool:
            return await has_default(client, "team") and await has_default(client, "default")

        await eventually(created)
        first = await client.get(SERVICE_ACCOUNT, "default", "team")
        await client.delete(SERVICE_ACCOUNT, "default", "team")

        async def recreated() -> bool:
            try:
                sa = await client.get(SERVICE_ACCOUNT, "default", "team")
            except errors.NotFound:
                return False
            return sa["metadata"]["uid"] != first["metadata"]["uid"]

        await eventually(recreated)


async def test_no_account_in_a_terminating_namespace(
    client: Client, informers: SharedInformerFactory
) -> None:
    await client.create(NAMESPACE, {"metadata": {"name": "team"}})
    await client.delete(NAMESPACE, "team")  # held by its finalizer: Terminating
    async with running(informers, ServiceAccountController(client, informers)):

        async def default_done() -> bool:
            return await has_default(client, "default")

        await eventually(default_done)
        assert not await has_default(client, "team")
