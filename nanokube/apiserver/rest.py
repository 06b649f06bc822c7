"""The generic registry: create, get, list, update, delete and watch for every kind.

Upstream's `generic/registry/store.go` in Python: one implementation for all
kinds, driven by their `Kind` declarations (defaults, validation, status
split, graceful deletion). It works on plain dicts and raises `StatusError`s,
so the HTTP handlers and the in-process client share exactly the same
semantics. Reads come from the watch cache; writes go to the store with
compare-and-swap on the object's resourceVersion.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from nanokube.api import errors, meta
from nanokube.api.errors import Cause
from nanokube.api.kinds import Kind
from nanokube.api.options import ListOptions, WriteOptions
from nanokube.apiserver import admission, validate
from nanokube.apiserver.watchcache import WatchCache, Watcher, decode
from nanokube.storage.store import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Strings = list[str]  # `list` is a method name in the class below
Objs = list[Obj]
Filter = Callable[[Obj], bool]

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's: no vowels, no look-alikes
_GENERATE_ATTEMPTS = 8  # the first name and upstream's 7 retries


def _generated(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


_META_KEEP_ON_UPDATE = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def _encode(obj: Obj) -> bytes:
    """The stored form: the object without its resourceVersion (the store's revision is it)."""
    md = obj["metadata"]
    rv = md.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def _spec_of(obj: Obj) -> Obj:
    """Everything that counts towards `generation`: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _encode_continue(revision: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": revision, "start": key})).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except Exception as e:  # noqa: BLE001 - any malformed token is the client's error
        raise errors.BadRequest(f"continue key is not valid: {e}") from None


class ResourceStore:
    """Generic CRUD over the store and the watch cache, for any `Kind`."""

    def __init__(
        self, store: Store, cache: WatchCache, service_network: str = "10.43.0.0/16"
    ) -> None:
        self.store = store
        self.cache = cache
        self.service_network = ipaddress.ip_network(service_network)
        # The newest revision this server has written: reads wait for the cache
        # to reach it, so a client always reads its own acknowledged writes.
        self.written = 0

    async def fresh(self) -> None:
        if self.written > self.cache.revision and not await self.cache.wait_for(self.written):
            raise errors.Timeout("Too large resource version: the watch cache is behind the store")

    def _written(self, revision: int) -> None:
        if revision > self.written:
            self.written = revision

    # -- reads -------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        await self.fresh()
        obj = self.cache.get(kind.key(namespace, name))
        if obj is None:
            raise errors.not_found(kind.plural, name, kind.group)
        return obj

    async def list(self, kind: Kind, namespace: str, opts: ListOptions) -> Obj:
        """A list object (`PodList`...), paginated with `limit`/`continue` as upstream."""
        if opts.continue_token:
            revision, start = _decode_continue(opts.continue_token)
            return await self._list_from_store(kind, namespace, opts, revision, start)
        if opts.resource_version_match == "Exact" and opts.resource_version not in ("", "0"):
            return await self._list_from_store(
                kind, namespace, opts, _rv(opts.resource_version), ""
            )
        if opts.resource_version not in ("", "0"):
            wanted = _rv(opts.resource_version)
            if not await self.cache.wait_for(wanted):
                raise errors.Timeout(
                    f"Too large resource version: {wanted}, current: {self.cache.revision}",
                    retry_after=1,
                )
        elif opts.resource_version == "":
            await self.fresh()
        revision = self.cache.revision
        items: Objs = []
        more_key = last_key = ""
        match = opts.match
        for key, obj in self.cache.prefix(kind.prefix()).items(namespace):
            if match is None or match(obj):
                if opts.limit and len(items) == opts.limit:
                    more_key = last_key
                    break
                items.append(obj)
                last_key = key
        return self._list_object(kind, items, revision, more_key)

    async def _list_from_store(
        self, kind: Kind, namespace: str, opts: ListOptions, revision: int, start: str
    ) -> Obj:
        items: Objs = []
        prefix = kind.prefix(namespace)
        more_key = ""
        try:
            while True:
                page = await self.store.list(
                    prefix, start_after=start, limit=opts.limit or 0, revision=revision
                )
                for kv in page.items:
                    obj = decode(kv)
                    if opts.match is None or opts.match(obj):
                        items.append(obj)
                if page.items:
                    start = page.items[-1].key
                if not page.more:
                    break
                if opts.limit and len(items) >= opts.limit:
                    more_key = start
                    break
        except CompactedError:
            raise errors.Expired(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            ) from None
        return self._list_object(kind, items, revision, more_key)

    def _list_object(self, kind: Kind, items: Objs, revision: int, more_key: str) -> Obj:
        md: Obj = {"resourceVersion": str(revision)}
        if more_key:
            md["continue"] = _encode_continue(revision, more_key)
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": md,
            "items": items,
        }

    def watch(self, kind: Kind, namespace: str, opts: ListOptions) -> Watcher:
        """Register a watch; the caller reads `watcher.queue` and must call `unwatch`."""
        rv = opts.resource_version
        from_revision = None if rv in ("", "0") else _rv(rv)
        try:
            return self.cache.add_watcher(kind.prefix(), namespace, opts.match, from_revision)
        except CompactedError as e:
            raise errors.Expired(
                f"too old resource version: {e.requested} ({e.compacted})"
            ) from None

    def unwatch(self, kind: Kind, watcher: Watcher) -> None:
        self.cache.remove_watcher(kind.prefix(), watcher)

    # -- writes ------------------------------------------------------------

    async def create(
        self, kind: Kind, namespace: str, obj: Obj, opts: WriteOptions, warnings: Strings
    ) -> Obj:
        md = self._check_identity(kind, namespace, obj)
        generated = not md.get("name")
        if generated:
            generate = md.get("generateName")
            if not generate:
                raise errors.invalid(
                    kind.kind,
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                    kind.group,
                )
            md["name"] = _generated(generate)
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(field, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now_rfc3339()
        if kind.has_status:
            md["generation"] = 1
            if not kind.status_on_create:
                obj.pop("status", None)
        elif "generation" in md and kind.custom_schema is not None:
            md["generation"] = 1
        recheck = validate.decode(kind, obj, opts.field_validation, warnings)
        kind.prepare_create(obj)
        validate.validate(kind, obj, None, recheck)
        await admission.on_create(self, kind, obj)
        if opts.dry_run:
            return obj
        # A generated name that is taken is drawn again, as upstream's
        # RetryGenerateName does (5 random letters collide a few times in 10,000).
        for attempt in range(_GENERATE_ATTEMPTS if generated else 1):
            try:
                kv = await self.store.create(kind.key(namespace, md["name"]), _encode(obj))
                break
            except KeyExistsError:
                if attempt == (_GENERATE_ATTEMPTS if generated else 1) - 1:
                    raise errors.already_exists(kind.plural, md["name"], kind.group) from None
                md["name"] = _generated(md["generateName"])
        self._written(kv.mod_revision)
        md["resourceVersion"] = str(kv.mod_revision)
        return obj

    def _check_identity(self, kind: Kind, namespace: str, obj: Obj) -> Obj:
        """apiVersion/kind/namespace of the body must agree with the URL."""
        if not isinstance(obj, dict):
            raise errors.BadRequest("the body of the request was in an unknown format")
        body_kind = obj.get("kind")
        if body_kind and body_kind != kind.kind:
            raise errors.BadRequest(
                f"the API version in the data ({obj.get('apiVersion', '')}) does not match "
                f"the expected API version ({kind.api_version})"
                if obj.get("apiVersion") not in (None, kind.api_version)
                else f"the kind in the data ({body_kind}) does not match the expected kind ({kind.kind})"
            )
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        elif not isinstance(md, dict):
            raise errors.BadRequest("metadata must be an object")
        if kind.namespaced:
            body_ns = md.get("namespace")
            if body_ns and body_ns != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        return md

    async def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: Obj,
        opts: WriteOptions,
        warnings: Strings,
        subresource: str = "",
    ) -> Obj:
        md = self._check_identity(kind, namespace, obj)
        if md.get("name") and md["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        md["name"] = name
        old = await self.get(kind, namespace, name)
        expected = md.get("resourceVersion")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group)
        new = self._merge_update(kind, old, obj, subresource)
        if subresource not in ("status", "finalize"):
            recheck = validate.decode(kind, new, opts.field_validation, warnings)
            kind.prepare_update(new, old)
            validate.validate(kind, new, old, recheck)
        return await self.write(kind, namespace, name, old, new, opts)

    def _merge_update(self, kind: Kind, old: Obj, new: Obj, subresource: str) -> Obj:
        """Apply upstream's PrepareForUpdate: what each endpoint may change."""
        old_md = old["metadata"]
        if subresource == "status":
            # The status endpoint takes the status and keeps everything else.
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if subresource == "finalize":
            # A namespace's finalize endpoint takes spec.finalizers, nothing else.
            merged = copy.deepcopy(old)
            merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get(
                "finalizers"
            ) or []
            return merged
        md = new["metadata"]
        for field in _META_KEEP_ON_UPDATE:
            if field in old_md:
                md[field] = old_md[field]
            else:
                md.pop(field, None)
        md.pop("generateName", None) if "generateName" not in old_md else None
        if kind.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
            generation = old_md.get("generation", 1)
            if _spec_of(new) != _spec_of(old):
                generation += 1
            md["generation"] = generation
        elif "generation" in old_md:
            md["generation"] = old_md["generation"] + (_spec_of(new) != _spec_of(old))
        return new

    async def write(
        self, kind: Kind, namespace: str, name: str, old: Obj, new: Obj, opts: WriteOptions
    ) -> Obj:
        """Compare-and-swap `old` → `new` as given: no update admission.

        For writes the registry itself decides (deletion marks) and for
        subresources with their own rules (a binding sets the otherwise
        immutable `spec.nodeName`). Deletes an object whose deletion no
        finalizer or grace period holds any longer.
        """
        md = new["metadata"]
        old_rv = old["metadata"]["resourceVersion"]
        md["resourceVersion"] = old_rv
        if new == old:
            return old  # nothing changed: no write, no event, the same resourceVersion
        if opts.dry_run:
            return new
        key = kind.key(namespace, name)
        if (
            md.get("deletionTimestamp")
            and not md.get("finalizers")
            and not md.get("deletionGracePeriodSeconds")
            and not admission.held_by_spec_finalizers(kind, new)
        ):
            # The last finalizer is gone from an object being deleted: delete it now.
            try:
                kv = await self.store.delete(key, int(old_rv))
            except (ConflictError, KeyNotFoundError):
                raise errors.conflict(kind.plural, name, kind.group) from None
            self._written(kv.mod_revision)
            md["resourceVersion"] = str(kv.mod_revision)
            return new
        try:
            kv = await self.store.update(key, _encode(new), int(old_rv))
        except ConflictError:
            raise errors.conflict(kind.plural, name, kind.group) from None
        except KeyNotFoundError:
            raise errors.not_found(kind.plural, name, kind.group) from None
        self._written(kv.mod_revision)
        md["resourceVersion"] = str(kv.mod_revision)
        return new

    async def replace_with(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        mutate: Callable[[Obj], Obj],
        opts: WriteOptions,
        warnings: Strings,
        subresource: str = "",
        attempts: int = 5,
    ) -> Obj:
        """Read-modify-write with retries on conflict: how patches and scale are applied."""
        for attempt in range(attempts):
            old = await self.get(kind, namespace, name)
            new = mutate(copy.deepcopy(old))
            try:
                return await self.update(kind, namespace, name, new, opts, warnings, subresource)
            except errors.Conflict:
                requested = (new.get("metadata") or {}).get("resourceVersion")
                if requested != old["metadata"]["resourceVersion"] or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def delete(
        self, kind: Kind, namespace: str, name: str, options: Obj, opts: WriteOptions
    ) -> Obj:
        """Delete as upstream: preconditions, finalizers, graceful deletion, propagation."""
        old = await self.get(kind, namespace, name)
        md = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise errors.Conflict(
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}"
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise errors.Conflict(
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {md.get('resourceVersion')}"
            )
        new = copy.deepcopy(old)
        nmd = new["metadata"]
        finalizers = list(nmd.get("finalizers") or [])
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") is True else "Background"
        )
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        grace = self._grace_period(kind, old, options)
        if finalizers or grace or admission.held_by_spec_finalizers(kind, old):
            # Not deleted yet: marked, and removed when the last finalizer goes
            # (or, for a graceful delete, when the node confirms with grace 0).
            if not nmd.get("deletionTimestamp"):
                nmd["deletionTimestamp"] = meta.now_rfc3339()
                nmd["deletionGracePeriodSeconds"] = grace or 0
            elif grace is not None and grace < (nmd.get("deletionGracePeriodSeconds") or 0):
                nmd["deletionGracePeriodSeconds"] = grace
            if finalizers:
                nmd["finalizers"] = finalizers
            admission.on_delete_mark(kind, new)
            return await self.write(kind, namespace, name, old, new, opts)
        if opts.dry_run:
            return old
        try:
            kv = await self.store.delete(kind.key(namespace, name), int(md["resourceVersion"]))
        except ConflictError:
            raise errors.conflict(kind.plural, name, kind.group) from None
        except KeyNotFoundError:
            raise errors.not_found(kind.plural, name, kind.group) from None
        self._written(kv.mod_revision)
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return gone

    def _grace_period(self, kind: Kind, obj: Obj, options: Obj) -> int | None:
        """Seconds a graceful delete waits for the node; None or 0 = delete now."""
        if not kind.graceful_deletion:
            return None
        requested = options.get("gracePeriodSeconds")
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return None  # never scheduled: nothing to stop
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        grace = (
            requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        )
        return max(int(grace), 0) or None

    async def delete_collection(
        self, kind: Kind, namespace: str, lopts: ListOptions, options: Obj, opts: WriteOptions
    ) -> Obj:
        listed = await self.list(kind, namespace, ListOptions(match=lopts.match))
        deleted = []
        for obj in listed["items"]:
            try:
                deleted.append(
                    await self.delete(kind, meta.namespace(obj), meta.name(obj), options, opts)
                )
            except errors.NotFound:
                continue
        return {**listed, "items": deleted}


def _rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise errors.BadRequest(f'invalid resource version "{value}"') from None
    if rv < 0:
        raise errors.BadRequest(f'invalid resource version "{value}"')
    return rv
