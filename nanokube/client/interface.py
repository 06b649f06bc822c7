"""The one `Client` interface that controllers, the scheduler and agents use.

Two implementations keep the same semantics and raise the same
`nanokube.api.errors.StatusError`s: the in-process client (calls the API
server's generic registry directly, no HTTP: controllers in the server process)
and the HTTPS client (separate processes and machines). A resource is named by
its `Kind` declaration (`nanokube.api.resources.builtin_kinds()` or a lookup in
`nanokube.client.kinds`); objects are plain JSON dicts, and what a client
returns is the caller's to mutate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from nanokube.api.kinds import Kind

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class Client(Protocol):
    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj: ...

    async def list(
        self,
        kind: Kind,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        """A list object: `items` and `metadata.resourceVersion` (and `continue`)."""
        ...

    async def create(
        self, kind: Kind, obj: Obj, namespace: str = "", *, dry_run: bool = False
    ) -> Obj:
        """Create; `namespace` defaults to the object's `metadata.namespace`."""
        ...

    async def update(self, kind: Kind, obj: Obj, *, subresource: str = "") -> Obj:
        """PUT the object (or its `status`); a stale resourceVersion raises Conflict."""
        ...

    async def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str = "",
    ) -> Obj: ...

    async def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str = "",
        *,
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        preconditions: Obj | None = None,
    ) -> Obj:
        """The object as deleted, or as marked for deletion while finalizers or a grace
        period hold it (`metadata.deletionTimestamp` set)."""
        ...

    async def create_subresource(
        self, kind: Kind, name: str, namespace: str, subresource: str, body: Obj
    ) -> Obj:
        """POST to a subresource: `pods/binding`, `pods/eviction`, `serviceaccounts/token`."""
        ...

    def watch(
        self,
        kind: Kind,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """(type, object) pairs: ADDED, MODIFIED, DELETED, BOOKMARK.

        Raises `errors.Expired` when the revision is too old (the caller relists).
        Ends when the server ends the watch (its timeout).
        """
        ...
