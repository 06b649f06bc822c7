"""Serving custom resources: the CRD controller of the API server.

Upstream's apiextensions-apiserver runs a few controllers over the
CustomResourceDefinitions; this module is the part of each that nanokube needs:

- naming (`NamingConditionController`): a CRD's names must not clash with
  another CRD's accepted names in the same group; then `status.acceptedNames`
  is the copy of `spec.names` and `NamesAccepted` is True (`NoConflicts`),
  else False with the clash (`PluralConflict`, `KindConflict`...).
- establishing (`EstablishingController`): a CRD whose names are accepted is
  `Established` (`InitialNamesAccepted`) and its storage version is recorded
  in `status.storedVersions`. Status is written through `/status`.
- serving (`crdHandler`): each served version of an accepted CRD becomes a
  `Kind` (see `crds_kinds`) in the registry, so the generic handlers, discovery
  and OpenAPI serve it; a changed CRD replaces its Kinds, a deleted one removes
  them. Discovery is invalidated on every change (OpenAPI follows the
  registry's generation).
- finalizing (`CRDFinalizer`): deleting a CRD through the API first adds the
  `customresourcecleanup.apiextensions.k8s.io` finalizer (`before_delete`,
  as upstream's CRD REST `Delete`); while the CRD terminates, new objects are
  refused (405), the existing ones are deleted (their own finalizers are
  waited for), and then the finalizer is removed, which deletes the CRD. A CRD
  that disappears without the finalizer (a delete that bypassed HTTP) has
  its objects deleted afterwards.

One task follows a watcher on the CRD prefix of the watch cache and queues CRD
names; one worker reconciles them one at a time, level-triggered: each pass
reads the CRD from the cache and makes one step towards serving it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind, Registry
from nanokube.api.options import WriteOptions
from nanokube.api.resources.groups_crd import CUSTOM_RESOURCE_DEFINITION as CRD
from nanokube.apiserver import crds_kinds
from nanokube.apiserver.discovery import Discovery
from nanokube.apiserver.rest import ResourceStore
from nanokube.apiserver.watchcache import Watcher

log = logging.getLogger(__name__)

Obj = dict[str, Any]

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
RETRY_SECONDS = 1.0  # a CRD whose objects still have finalizers is looked at again this often
_NAME_KEYS = ("plural", "singular", "shortNames", "kind", "listKind", "categories")


@dataclass
class _Served:
    """What the registry holds for one CRD, and what it was built from."""

    source: bytes  # spec + accepted names, encoded: a change means new Kinds
    kinds: list[Kind]
    storage: Kind


def _condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: Obj, type_: str, value: str, reason: str, message: str) -> None:
    """Set a condition; its lastTransitionTime changes only when its status does."""
    conditions = status.setdefault("conditions", [])
    old = _condition(status, type_)
    new = {
        "type": type_,
        "status": value,
        "lastTransitionTime": meta.now_rfc3339(),
        "reason": reason,
        "message": message,
    }
    if old is None:
        conditions.append(new)
    else:
        if old.get("status") == value:
            new["lastTransitionTime"] = old.get("lastTransitionTime") or new["lastTransitionTime"]
        old.clear()
        old.update(new)


def is_true(crd: Obj, type_: str) -> bool:
    c = _condition(crd.get("status") or {}, type_)
    return c is not None and c.get("status") == "True"


class CRDController:
    """Keeps the registry serving exactly the custom resources of the stored CRDs."""

    def __init__(self, registry: Registry, resources: ResourceStore, discovery: Discovery) -> None:
        self.registry = registry
        self.resources = resources
        self.discovery = discovery
        # CRD name → its Kinds in the registry.
        self._served: dict[str, _Served] = {}
        # CRDs being deleted: creates of their objects are refused.
        self._terminating: set[str] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # names in the queue, so a burst of events queues one pass
        self._watcher: Watcher | None = None
        # One pending retry per CRD, so retries triggered by events do not pile up.
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Serve the stored CRDs before returning, then follow their changes."""
        self._watch()
        assert self._watcher is not None
        while not self._watcher.queue.empty():
            item = self._watcher.queue.get_nowait()
            if item is not None:
                self._enqueue(meta.name(item[1].obj))
        while not self._queue.empty():
            await self._reconcile_logged(self._next())
        self._tasks = [
            asyncio.create_task(self._follow(), name="crd-watch"),
            asyncio.create_task(self._work(), name="crd-worker"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        if self._watcher is not None:
            self.resources.cache.remove_watcher(CRD.prefix(), self._watcher)
            self._watcher = None

    async def on_cleanup(self, app: Any) -> None:
        """aiohttp's on_cleanup signal: stop with the application."""
        await self.stop()

    def _watch(self) -> None:
        self._watcher = self.resources.cache.add_watcher(CRD.prefix(), "", None, None)

    async def _follow(self) -> None:
        while True:
            assert self._watcher is not None
            item = await self._watcher.queue.get()
            if item is None:
                # Cut off (the cache reloaded after falling behind the store): let
                # the reload finish, then start over from the current state.
                self.resources.cache.remove_watcher(CRD.prefix(), self._watcher)
                await asyncio.sleep(RETRY_SECONDS)
                self._watch()
                for name in list(self._served):
                    self._enqueue(name)
                continue
            self._enqueue(meta.name(item[1].obj))

    def _enqueue(self, name: str) -> None:
        if name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    def _next(self) -> str:
        name = self._queue.get_nowait()
        self._queued.discard(name)
        return name

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            await self._reconcile_logged(name)

    def _retry_later(self, name: str) -> None:
        pending = self._retries.pop(name, None)
        if pending is not None:
            pending.cancel()
        self._retries[name] = asyncio.get_running_loop().call_later(
            RETRY_SECONDS, self._retry, name
        )

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        self._enqueue(name)

    async def _reconcile_logged(self, name: str) -> None:
        try:
            await self.reconcile(name)
        except errors.Conflict:
            self._enqueue(name)  # a write raced ours: look again at the newer object
        except Exception:  # noqa: BLE001 - one broken CRD must not stop the others
            log.exception("reconciling CRD failed crd=%s", name)
            self._retry_later(name)

    # -- reconcile -----------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        """One step towards serving the CRD `name` as it is stored now."""
        await self.resources.fresh()
        crd = self.resources.cache.get(CRD.key("", name))
        if crd is None:
            await self._forget(name)
            return
        crd = copy.deepcopy(crd)
        if crd["metadata"].get("deletionTimestamp"):
            self._terminating.add(name)
            await self._finalize(crd)
            return
        self._terminating.discard(name)
        crd = await self._update_status(crd)
        self._serve(crd)

    def _conflict(self, crd: Obj) -> tuple[str, str] | None:
        """Upstream's naming check against the accepted names of the group's other CRDs."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        resources: set[str] = set()
        kinds: set[str] = set()
        for other in self.resources.cache.prefix(CRD.prefix()).objects.values():
            other_spec = other.get("spec") or {}
            if meta.name(other) == meta.name(crd) or other_spec.get("group") != spec.get("group"):
                continue
            accepted = (other.get("status") or {}).get("acceptedNames") or {}
            resources.update(n for n in (accepted.get("plural"), accepted.get("singular")) if n)
            resources.update(accepted.get("shortNames") or ())
            kinds.update(n for n in (accepted.get("kind"), accepted.get("listKind")) if n)
        if names.get("plural") in resources:
            return "PluralConflict", f'"{names["plural"]}" is already in use'
        if names.get("singular") in resources:
            return "SingularConflict", f'"{names["singular"]}" is already in use'
        for short in names.get("shortNames") or ():
            if short in resources:
                return "ShortNamesConflict", f'"{short}" is already in use'
        if names.get("kind") in kinds:
            return "KindConflict", f'"{names["kind"]}" is already in use'
        if names.get("listKind") in kinds:
            return "ListKindConflict", f'"{names["listKind"]}" is already in use'
        return None

    async def _update_status(self, crd: Obj) -> Obj:
        """NamesAccepted, Established, acceptedNames and storedVersions, through `/status`."""
        status = copy.deepcopy(crd.get("status") or {})
        spec = crd.get("spec") or {}
        conflict = self._conflict(crd)
        if conflict is None:
            names = spec.get("names") or {}
            status["acceptedNames"] = {k: names[k] for k in _NAME_KEYS if names.get(k)}
            set_condition(status, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
            set_condition(
                status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            )
        else:
            set_condition(status, "NamesAccepted", "False", *conflict)
            if not is_true(crd, "Established"):
                set_condition(
                    status, "Established", "False", "NotAccepted", "not all names are accepted"
                )
            status.setdefault("acceptedNames", {"plural": "", "kind": ""})
        stored = status.setdefault("storedVersions", [])
        for ver in spec.get("versions") or []:
            if ver.get("storage") and ver.get("name") not in stored:
                stored.append(ver["name"])
        if status == crd.get("status"):
            return crd
        crd["status"] = status
        return await self.resources.update(
            CRD, "", meta.name(crd), crd, WriteOptions(), [], subresource="status"
        )

    def _refuse_while_terminating(self, crd_name: str) -> Any:
        def check(obj: Obj) -> None:
            if crd_name in self._terminating:
                raise errors.MethodNotAllowed(
                    "create not allowed while custom resource definition is terminating"
                )

        return check

    def _serve(self, crd: Obj) -> None:
        """Put the CRD's served versions into the registry (or take them out)."""
        name = meta.name(crd)
        accepted = (crd.get("status") or {}).get("acceptedNames") or {}
        kinds: list[Kind] = []
        if accepted.get("plural") and accepted.get("kind"):
            kinds = crds_kinds.served_kinds(crd, accepted, self._refuse_while_terminating(name))
        kinds = [k for k in kinds if self._free(k, name)]
        source = orjson.dumps([crd.get("spec"), accepted], option=orjson.OPT_SORT_KEYS)
        served = self._served.get(name)
        if served is not None and served.source == source:
            return
        if served is not None:
            for k in served.kinds:
                self.registry.remove(k)
        for k in kinds:
            self.registry.add(k)
        self._served[name] = _Served(source, kinds, crds_kinds.storage_kind(crd))
        self.discovery.invalidate()
        log.info(
            "serving custom resources crd=%s versions=%s",
            name,
            ",".join(k.version for k in kinds) or "-",
        )

    def _free(self, kind: Kind, crd_name: str) -> bool:
        """Whether a Kind may be served: it must not take the place of a built-in kind."""
        own = self._served.get(crd_name)
        for existing in (
            self.registry.by_resource(kind.group, kind.version, kind.plural),
            self.registry.by_kind(kind.api_version, kind.kind),
        ):
            if existing is not None and not (own and any(existing is k for k in own.kinds)):
                log.warning(
                    "CRD not served: %s/%s is taken crd=%s", kind.api_version, kind.kind, crd_name
                )
                return False
        return True

    # -- deletion ------------------------------------------------------------

    async def before_delete(self, name: str, dry_run: bool = False) -> None:
        """Upstream's CRD REST `Delete`: hold the CRD by the cleanup finalizer first."""
        crd = self.resources.cache.get(CRD.key("", name))
        if crd is None or dry_run or crd["metadata"].get("deletionTimestamp"):
            return
        if CLEANUP_FINALIZER in (crd["metadata"].get("finalizers") or ()):
            return

        def add_finalizer(obj: Obj) -> Obj:
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if CLEANUP_FINALIZER not in finalizers:
                finalizers.append(CLEANUP_FINALIZER)
            return obj

        try:
            await self.resources.replace_with(CRD, "", name, add_finalizer, WriteOptions(), [])
        except errors.NotFound:
            pass  # gone meanwhile: the delete will say so

    async def _finalize(self, crd: Obj) -> None:
        """Delete the CRD's objects, then let the CRD go by removing our finalizer."""
        name = meta.name(crd)
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or ()):
            return  # held by others' finalizers only: theirs to release
        status = copy.deepcopy(crd.get("status") or {})
        storage = crds_kinds.storage_kind(crd)
        if not is_true(crd, "Terminating"):
            set_condition(
                status,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            )
            crd = await self._write_status(crd, status)
        remaining = await self._delete_objects(storage)
        if remaining:
            set_condition(
                status,
                "Terminating",
                "True",
                "InstanceDeletionCheck",
                f"could not confirm zero CustomResources remaining: {remaining} remaining",
            )
            await self._write_status(crd, status)
            self._retry_later(name)
            return
        set_condition(
            status, "Terminating", "False", "InstanceDeletionCompleted", "removed all instances"
        )
        crd = await self._write_status(crd, status)

        def remove_finalizer(obj: Obj) -> Obj:
            md = obj["metadata"]
            md["finalizers"] = [f for f in md.get("finalizers") or () if f != CLEANUP_FINALIZER]
            return obj

        await self.resources.replace_with(CRD, "", name, remove_finalizer, WriteOptions(), [])
        log.info("custom resources deleted crd=%s", name)

    async def _write_status(self, crd: Obj, status: Obj) -> Obj:
        if status == crd.get("status"):
            return crd
        new = copy.deepcopy(crd)
        new["status"] = copy.deepcopy(status)
        return await self.resources.update(
            CRD, "", meta.name(crd), new, WriteOptions(), [], subresource="status"
        )

    async def _delete_objects(self, storage: Kind) -> int:
        """Delete every stored object of the kind; how many are left (held by finalizers)."""
        objects = list(self.resources.cache.prefix(storage.prefix()).objects.values())
        remaining = 0
        for obj in objects:
            md = obj["metadata"]
            if md.get("deletionTimestamp"):
                remaining += 1
                continue
            try:
                result = await self.resources.delete(
                    storage, md.get("namespace", ""), md["name"], {}, WriteOptions()
                )
            except errors.NotFound:
                continue
            except errors.Conflict:
                remaining += 1  # changed meanwhile: the next pass deletes it
                continue
            if result["metadata"].get("finalizers"):
                remaining += 1  # marked for deletion; its finalizers hold it
        return remaining

    async def _forget(self, name: str) -> None:
        """The CRD is gone: delete what it left (if it bypassed the finalizer), stop serving."""
        self._terminating.discard(name)
        served = self._served.pop(name, None)
        if served is None:
            return
        left = await self._delete_objects(served.storage)
        for k in served.kinds:
            self.registry.remove(k)
        self.discovery.invalidate()
        log.info("custom resources no longer served crd=%s left=%d", name, left)
