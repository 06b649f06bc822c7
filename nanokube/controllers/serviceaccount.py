"""The service account controller: every active namespace has a `default` ServiceAccount.

As upstream's `pkg/controller/serviceaccount/serviceaccounts_controller.go`,
`reconcile(namespace)` creates the ServiceAccounts every namespace should
have (`default`) when the namespace is Active and they are missing from the
cache. It runs when a namespace appears or changes, and when one of those
ServiceAccounts is deleted, so a deleted `default` comes back. A create that
finds the account already there, or a namespace already terminating, is fine.
"""

from __future__ import annotations

import logging
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.core import NAMESPACE, SERVICE_ACCOUNT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# upstream's DefaultServiceAccountsControllerOptions.ServiceAccounts
ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"
    workers = 1

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # Namespaces are the keys: each should hold the accounts in ACCOUNTS.
        self.namespaces = self.watch(informers.informer(NAMESPACE))
        # The accounts that exist, so a sync creates only what is missing.
        self.accounts = self.watch(informers.informer(SERVICE_ACCOUNT))
        self.enqueue_events(self.namespaces)
        self.accounts.add_event_handler(on_delete=self._account_deleted)

    def _account_deleted(self, sa: Obj) -> None:
        if meta.name(sa) in ACCOUNTS:
            self.queue.add(meta.namespace(sa))

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return
        if ns["metadata"].get("deletionTimestamp"):
            return
        for name in ACCOUNTS:
            if self.accounts.get(name, key) is not None:
                continue
            log.info("creating service account namespace=%s name=%s", key, name)
            try:
                await self.client.create(
                    SERVICE_ACCOUNT, {"metadata": {"name": name, "namespace": key}}
                )
            except (errors.AlreadyExists, errors.Forbidden):
                continue  # already there, or the namespace is going away
