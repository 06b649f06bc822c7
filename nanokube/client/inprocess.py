"""The in-process client: the API server's generic registry called directly, no HTTP.

Controllers, the scheduler and a node agent in the server process use this; it
has the semantics of the HTTP client (the same registry code runs behind both,
and both raise the same `StatusError`s) at the cost of a function call instead
of a request. The client layer may not import the API server, so the registry
is handed in by the caller (the CLI wiring) and typed here by the small
`Resources` protocol; PATCH lives in the server's `patching` module and is
handed in the same way, as are the special subresources (`pods/binding`,
`pods/eviction`) whose handlers the server registers.

The registry's reads return the watch cache's own dicts, and writes may return
them too (an update that changes nothing returns the stored object): every
object that leaves this client is a copy, and every object that enters it is
copied first, so neither the cache nor the caller's data is ever shared.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from nanokube.api import errors, selectors
from nanokube.api.kinds import Kind
from nanokube.api.options import Filter, ListOptions, WriteOptions
from nanokube.api.patch_json import copy_json
from nanokube.client.interface import MERGE_PATCH, Obj

log = logging.getLogger(__name__)

# The HTTP server's default when a request does not say (upstream's too).
_FIELD_VALIDATION = "Warn"
_BASE_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
}


class WatchEventLike(Protocol):
    obj: Obj


class WatcherLike(Protocol):
    """The registry's watch: a queue of (type, event) items; None means cut off (relist)."""

    queue: asyncio.Queue[Any]


class Resources(Protocol):
    """What this client needs of the API server's `ResourceStore`."""

    async def fresh(self) -> None: ...

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj: ...

    async def list(self, kind: Kind, namespace: str, opts: ListOptions) -> Obj: ...

    async def create(
        self, kind: Kind, namespace: str, obj: Obj, opts: WriteOptions, warnings: builtins.list[str]
    ) -> Obj: ...

    async def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: Obj,
        opts: WriteOptions,
        warnings: builtins.list[str],
        subresource: str = "",
    ) -> Obj: ...

    async def delete(
        self, kind: Kind, namespace: str, name: str, options: Obj, opts: WriteOptions
    ) -> Obj: ...

    def watch(self, kind: Kind, namespace: str, opts: ListOptions) -> Any: ...

    def unwatch(self, kind: Kind, watcher: Any) -> None: ...


class Patcher(Protocol):
    """The server's `patching.patch`: returns (object, HTTP code)."""

    def __call__(
        self,
        store: Any,
        kind: Kind,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
        warnings: list[str],
        subresource: str = "",
    ) -> Awaitable[tuple[Obj, int]]: ...


# A POST to a special subresource: (resources, namespace, name, body) -> response object.
SubresourceCreator = Callable[[Any, str, str, Obj], Awaitable[Obj]]


def compile_match(kind: Kind, label_selector: str, field_selector: str) -> Filter | None:
    """The selectors as one filter, compiled as the HTTP handlers compile them."""
    matchers: list[Filter] = []
    if label_selector:
        label = selectors.parse_label_selector(label_selector)
        if not label.empty:
            matchers.append(label.matches_object)
    if field_selector:
        fields = selectors.parse_field_selector(field_selector)
        if not fields.empty:
            matchers.append(fields.compile({**_BASE_FIELDS, **kind.field_selectors}))
    if not matchers:
        return None
    if len(matchers) == 1:
        return matchers[0]
    first, second = matchers
    return lambda o: first(o) and second(o)


def _namespace_of(kind: Kind, obj: Obj, namespace: str) -> str:
    if not kind.namespaced:
        return ""
    return namespace or (obj.get("metadata") or {}).get("namespace") or ""


class InProcessClient:
    """The `Client` over a `ResourceStore` in the same process."""

    def __init__(
        self,
        resources: Resources,
        patch: Patcher | None = None,
        subresources: Mapping[tuple[str, str], SubresourceCreator] | None = None,
    ) -> None:
        self.resources = resources
        self._patch = patch
        # (plural, subresource) -> handler, e.g. ("pods", "binding").
        self._subresources = dict(subresources or {})

    async def close(self) -> None:
        """Nothing to release; present so both clients close the same way."""

    def _write_options(self, dry_run: bool = False) -> WriteOptions:
        return WriteOptions(dry_run=dry_run, field_validation=_FIELD_VALIDATION)

    @staticmethod
    def _warn(kind: Kind, warnings: list[str]) -> None:
        for w in warnings:
            log.info("server warning resource=%s warning=%s", kind.plural, w)

    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        obj = await self.resources.get(kind, namespace if kind.namespaced else "", name)
        result: Obj = copy_json(obj)
        return result

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
        opts = ListOptions(
            match=compile_match(kind, label_selector, field_selector),
            limit=max(limit, 0),
            continue_token=continue_token,
            resource_version=resource_version,
        )
        listed = await self.resources.list(kind, namespace if kind.namespaced else "", opts)
        result: Obj = copy_json(listed)
        return result

    async def create(
        self, kind: Kind, obj: Obj, namespace: str = "", *, dry_run: bool = False
    ) -> Obj:
        warnings: list[str] = []
        body = copy_json(obj)
        ns = _namespace_of(kind, body, namespace)
        if kind.namespaced and not ns:
            raise errors.NotFound("the server could not find the requested resource")
        # The registry returns the dict it was given (ours): no copy needed on the way out.
        created = await self.resources.create(
            kind, ns, body, self._write_options(dry_run), warnings
        )
        self._warn(kind, warnings)
        return created

    async def update(self, kind: Kind, obj: Obj, *, subresource: str = "") -> Obj:
        warnings: list[str] = []
        body = copy_json(obj)
        md = body.get("metadata") or {}
        name = md.get("name") or ""
        if not name:
            raise errors.BadRequest("name is required for an update")
        ns = _namespace_of(kind, body, "")
        updated = await self.resources.update(
            kind, ns, name, body, self._write_options(), warnings, subresource
        )
        self._warn(kind, warnings)
        result: Obj = copy_json(updated)
        return result

    async def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str = "",
    ) -> Obj:
        if self._patch is None:
            raise errors.MethodNotAllowed("this in-process client was built without PATCH support")
        warnings: list[str] = []
        ns = namespace if kind.namespaced else ""
        patched, _ = await self._patch(
            self.resources,
            kind,
            ns,
            name,
            patch_type,
            copy_json(patch),
            self._write_options(),
            warnings,
            subresource,
        )
        self._warn(kind, warnings)
        result: Obj = copy_json(patched)
        return result

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
        options: Obj = {}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        ns = namespace if kind.namespaced else ""
        deleted = await self.resources.delete(kind, ns, name, options, self._write_options())
        result: Obj = copy_json(deleted)
        return result

    async def create_subresource(
        self, kind: Kind, name: str, namespace: str, subresource: str, body: Obj
    ) -> Obj:
        handler = self._subresources.get((kind.plural, subresource))
        if handler is None:
            raise errors.MethodNotAllowed(
                f"the server does not allow this method on {kind.plural}/{subresource}"
            )
        result: Obj = copy_json(await handler(self.resources, namespace, name, copy_json(body)))
        return result

    async def watch(
        self,
        kind: Kind,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        opts = ListOptions(
            match=compile_match(kind, label_selector, field_selector),
            resource_version=resource_version,
        )
        if resource_version == "":
            await self.resources.fresh()  # as the HTTP handler: see every acknowledged write
        watcher = self.resources.watch(kind, namespace if kind.namespaced else "", opts)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_seconds is None else loop.time() + timeout_seconds
        try:
            while True:
                if deadline is not None and loop.time() >= deadline:
                    return
                try:
                    item = watcher.queue.get_nowait()  # a burst costs no timer per event
                except asyncio.QueueEmpty:
                    if deadline is None:
                        item = await watcher.queue.get()
                    else:
                        try:
                            async with asyncio.timeout_at(deadline):
                                item = await watcher.queue.get()
                        except TimeoutError:
                            return
                if item is None:
                    raise errors.Expired("too old resource version: the watch fell behind")
                etype, event = item
                yield etype, copy_json(event.obj)
        finally:
            self.resources.unwatch(kind, watcher)
