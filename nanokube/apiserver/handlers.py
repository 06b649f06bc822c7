"""HTTP handlers for resource paths: one generic handler for every kind and verb.

The request is parsed into a `RequestInfo`, the query into list/write options,
and the work is done by `ResourceStore` (CRUD) and `patching` (PATCH, scale);
this module only translates between HTTP and those. Special subresources
(`log`, `exec`, `binding`, ...) are looked up in `subresource_handlers`, which
later parts of the server fill in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from nanokube.api import errors, selectors
from nanokube.api.kinds import Kind, Registry
from nanokube.api.options import ListOptions, WriteOptions
from nanokube.apiserver import codec, patching, tables
from nanokube.apiserver.requestinfo import RequestInfo
from nanokube.apiserver.rest import ResourceStore
from nanokube.apiserver.watchcache import Watcher

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SubresourceHandler = Callable[[web.Request, RequestInfo], Awaitable[web.StreamResponse]]

BOOKMARK_INTERVAL = 30.0  # seconds between bookmarks on an idle watch that asked for them
DEFAULT_WATCH_TIMEOUT = 1800.0  # upstream's min-request-timeout
_BASE_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
}


def list_options(kind: Kind, q: Any) -> ListOptions:
    """List and watch options from the query: selectors compiled into one filter."""
    matchers: list[Callable[[Obj], bool]] = []
    if q.get("labelSelector"):
        label_selector = selectors.parse_label_selector(q["labelSelector"])
        if not label_selector.empty:
            matchers.append(label_selector.matches_object)
    if q.get("fieldSelector"):
        getters = {**_BASE_FIELDS, **kind.field_selectors}
        matchers.append(selectors.compile_field_selector(q["fieldSelector"], getters))
    match: Callable[[Obj], bool] | None = None
    if len(matchers) == 1:
        match = matchers[0]
    elif matchers:
        first, second = matchers
        match = lambda o: first(o) and second(o)  # noqa: E731
    try:
        limit = int(q.get("limit") or 0)
    except ValueError:
        raise errors.BadRequest(f"invalid limit: {q.get('limit')}") from None
    return ListOptions(
        match=match,
        limit=max(limit, 0),
        continue_token=q.get("continue", ""),
        resource_version=q.get("resourceVersion", ""),
        resource_version_match=q.get("resourceVersionMatch", ""),
    )


def write_options(q: Any) -> WriteOptions:
    dry_run = q.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise errors.BadRequest(f'unsupported dry run value "{value}": must be "All"')
    validation = q.get("fieldValidation", "Warn") or "Warn"
    if validation not in ("Ignore", "Warn", "Strict"):
        raise errors.BadRequest(
            f'fieldValidation parameter unsupported: "{validation}": must be one of Ignore, Warn, Strict'
        )
    return WriteOptions(
        dry_run=bool(dry_run), field_validation=validation, field_manager=q.get("fieldManager", "")
    )


class ResourceHandler:
    def __init__(self, registry: Registry, store: ResourceStore) -> None:
        self.registry = registry
        self.store = store
        self.subresource_handlers: dict[tuple[str, str], SubresourceHandler] = {}

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = info.kind
        assert kind is not None
        sub = info.subresource
        if sub and sub not in ("status", "scale", "finalize"):
            handler = self.subresource_handlers.get((kind.plural, sub))
            if handler is None:
                raise errors.MethodNotAllowed(
                    f"the server does not allow this method on {kind.plural}/{sub}"
                )
            return await handler(request, info)
        method = request.method
        if kind.namespaced and not info.namespace and (info.name or method not in ("GET",)):
            if method == "POST" or info.name:
                raise errors.NotFound("the server could not find the requested resource")
        if method == "GET":
            if info.name:
                return await self._get(request, kind, info)
            if info.watch_prefix or _truthy(request.query.get("watch")):
                return await self._watch(request, kind, info)
            return await self._list(request, kind, info)
        if method == "POST" and not info.name:
            return await self._create(request, kind, info)
        if method == "PUT" and info.name:
            return await self._update(request, kind, info)
        if method == "PATCH" and info.name:
            return await self._patch(request, kind, info)
        if method == "DELETE":
            return await self._delete(request, kind, info)
        raise errors.MethodNotAllowed(
            "the server does not allow this method on the requested resource"
        )

    # -- reads -------------------------------------------------------------

    async def _get(self, request: web.Request, kind: Kind, info: RequestInfo) -> web.StreamResponse:
        obj = await self.store.get(kind, info.namespace, info.name)
        if info.subresource == "scale":
            obj = patching.scale_of(kind, obj)
            return codec.json_response(obj)
        accept = request.headers.get("Accept", "")
        if tables.wants_table(accept):
            md = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return codec.json_response(
                tables.table(kind, [obj], md, request.query.get("includeObject", "Metadata"))
            )
        return codec.json_response(obj)

    async def _list(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        result = await self.store.list(kind, info.namespace, list_options(kind, request.query))
        if tables.wants_table(request.headers.get("Accept", "")):
            result = tables.table(
                kind,
                result["items"],
                result["metadata"],
                request.query.get("includeObject", "Metadata"),
            )
        return codec.json_response(result)

    async def _watch(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        q = request.query
        opts = list_options(kind, q)
        initial_end = _truthy(q.get("sendInitialEvents"))
        if initial_end:
            opts.resource_version = ""  # current state as ADDED events, then the end bookmark
        if opts.resource_version == "" and not initial_end:
            await self.store.fresh()
        watcher = self.store.watch(kind, info.namespace, opts)
        start_revision = self.store.cache.revision
        initial = watcher.queue.qsize() if initial_end else -1
        try:
            timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            timeout = DEFAULT_WATCH_TIMEOUT
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = q.get("includeObject", "Metadata")
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await self._stream(
                resp, kind, watcher, timeout, as_table, include, bookmarks, initial, start_revision
            )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(kind, watcher)
        return resp

    async def _stream(
        self,
        resp: web.StreamResponse,
        kind: Kind,
        watcher: Watcher,
        timeout: float,
        as_table: bool,
        include: str,
        bookmarks: bool,
        initial: int,
        start_revision: int,
    ) -> None:
        deadline = time.monotonic() + timeout
        first = True
        if initial == 0:
            await resp.write(_bookmark(kind, start_revision, initial_end=True))
        sent = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if watcher.queue.empty():
                wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
                try:
                    # A timer, not a task per event: fan-out to many watchers stays cheap.
                    async with asyncio.timeout(wait):
                        item = await watcher.queue.get()
                except TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        await resp.write(_bookmark(kind, self.store.cache.revision))
                    continue
            else:
                item = watcher.queue.get_nowait()
            chunk = []
            while True:
                if item is None:
                    expired = errors.Expired("too old resource version: the watch fell behind")
                    chunk.append(
                        orjson.dumps({"type": "ERROR", "object": expired.to_status()}) + b"\n"
                    )
                    await resp.write(b"".join(chunk))
                    return
                etype, event = item
                if as_table:
                    tbl = tables.table(
                        kind,
                        [event.obj],
                        {"resourceVersion": event.obj["metadata"].get("resourceVersion", "")},
                        include,
                        with_columns=first,
                    )
                    first = False
                    chunk.append(orjson.dumps({"type": etype, "object": tbl}) + b"\n")
                else:
                    chunk.append(event.line(etype))
                sent += 1
                if sent == initial:
                    chunk.append(_bookmark(kind, start_revision, initial_end=True))
                if watcher.queue.empty() or len(chunk) >= 256:
                    break
                item = watcher.queue.get_nowait()
            await resp.write(b"".join(chunk))

    # -- writes ------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        return codec.decode_body(await request.read(), codec.media_type(request))

    async def _create(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        obj = await self._body(request)
        warnings: list[str] = []
        created = await self.store.create(
            kind, info.namespace, obj, write_options(request.query), warnings
        )
        return codec.json_response(created, 201, warnings)

    async def _update(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        obj = await self._body(request)
        warnings: list[str] = []
        opts = write_options(request.query)
        if info.subresource == "scale":
            scale = await patching.update_scale(
                self.store, kind, info.namespace, info.name, obj, opts, warnings
            )
            return codec.json_response(scale, 200, warnings)
        updated = await self.store.update(
            kind,
            info.namespace,
            info.name,
            obj,
            opts,
            warnings,
            info.subresource,
        )
        return codec.json_response(updated, 200, warnings)

    async def _patch(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        patch_type = codec.media_type(request)
        if patch_type not in codec.PATCH_TYPES:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(sorted(codec.PATCH_TYPES))}"
            )
        body = codec.decode_body(await request.read(), patch_type)
        warnings: list[str] = []
        opts = write_options(request.query)
        if info.subresource == "scale":
            scale = await patching.update_scale(
                self.store, kind, info.namespace, info.name, (patch_type, body), opts, warnings
            )
            return codec.json_response(scale, 200, warnings)
        obj, code = await patching.patch(
            self.store,
            kind,
            info.namespace,
            info.name,
            patch_type,
            body,
            opts,
            warnings,
            info.subresource,
            _truthy(request.query.get("force")),
        )
        return codec.json_response(obj, code, warnings)

    async def _delete(
        self, request: web.Request, kind: Kind, info: RequestInfo
    ) -> web.StreamResponse:
        raw = await request.read()
        options: Obj = {}
        if raw.strip():
            options = codec.decode_body(raw, codec.media_type(request)) or {}
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        opts = write_options(q)
        if info.name:
            obj = await self.store.delete(kind, info.namespace, info.name, options, opts)
            return codec.json_response(obj)
        result = await self.store.delete_collection(
            kind, info.namespace, list_options(kind, q), options, opts
        )
        return codec.json_response(result)


def _bookmark(kind: Kind, revision: int, initial_end: bool = False) -> bytes:
    md: Obj = {"resourceVersion": str(revision)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return (
        orjson.dumps(
            {
                "type": "BOOKMARK",
                "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": md},
            }
        )
        + b"\n"
    )


def _truthy(value: str | None) -> bool:
    return value in ("true", "1", "True")
