"""The node's image store: what the kubelet asks for an image, and where the answer lives.

Layout under ``DATA_DIR/agent/images/`` (the directory is also where image archives are
dropped to be imported at agent start, as with k3s's ``agent/images/``)::

    images.json           the record: images, layers, names, imported archives (index.py)
    blobs/sha256/<hex>    manifests, configs and compressed layers, verified (blobs.py)
    layers/<chain hex>/   each layer unpacked once, overlayfs-ready (layers.py)
    tmp/<pid>/            downloads and imports in progress, one directory per process
                          (the agent and ``nanokube images`` may run at once); those
                          of dead processes are removed when a store opens

A layer directory appears by one rename once complete and goes by a rename to a
``.trash-`` name before it is deleted, so a crash never leaves a half-unpacked layer
under a chain id. Work on one thing is done once: concurrent pulls of one name (with
the same credentials) share one pull, concurrent fetches of one blob share one
download, concurrent unpacks of one layer share one unpack.

Images are named by their config digest (the image id of ``crictl images``), and
found by any of: a reference (normalised: ``busybox`` is
``docker.io/library/busybox:latest``), ``name@sha256:...``, the id, or a unique
prefix of the id.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from nanokube.runtime.contract import ImageConfig
from nanokube.runtime.images import archive, index, layers, pull
from nanokube.runtime.images import manifest as mf
from nanokube.runtime.images.blobs import BlobStore, hex_of
from nanokube.runtime.images.errors import (
    ArchiveError,
    ContentError,
    ImageInUse,
    ImageNotFound,
    PullError,
)
from nanokube.runtime.images.index import Image, Index
from nanokube.runtime.images.reference import parse
from nanokube.runtime.images.registry import Credentials, RegistryClient, RegistryError

log = logging.getLogger(__name__)

ORPHAN_AGE = 3600.0
"""Seconds after which `gc` deletes blobs and layers no image owns (left by a crash
between download and record). Young ones may belong to a pull still in progress."""


USE_RESOLUTION = 10.0
"""Seconds within which `mark_used` does not record a use again (the kubelet's image GC
runs every five minutes and keeps images used in the last two)."""


@dataclass
class GCResult:
    removed: list[str]
    """Ids of the images deleted."""
    freed: int
    """Bytes of blobs and unpacked layers deleted."""


class ImageStore:
    """One per node (the agent's); `nanokube images` opens another on the same files."""

    def __init__(
        self, root: str | os.PathLike[str], insecure_registries: Collection[str] = ()
    ) -> None:
        self.root = Path(root)
        self.layers_dir = self.root / "layers"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        # Several processes may use the store at once (the agent, `nanokube images`):
        # each works in a directory of its own and clears only those of dead ones.
        self.tmp = self.root / "tmp" / str(os.getpid())
        _clear_leftovers(self.root / "tmp", self.layers_dir)
        self.blobs = BlobStore(self.root / "blobs", self.tmp)
        self.record = Index(self.root)
        self.registry = RegistryClient(insecure_registries)
        self._pulls: dict[tuple[str, tuple[str, str] | None], asyncio.Task[Image]] = {}
        self._unpacks: dict[str, asyncio.Future[None]] = {}
        self._configs: dict[str, ImageConfig] = {}
        self._busy = 0
        """Pulls and imports in progress: `gc` waits for a quiet moment, so it never
        deletes a blob or layer that content being recorded counts on."""

    async def close(self) -> None:
        await self.registry.close()

    # Queries

    def list_images(self) -> list[Image]:
        doc = self.record.read()
        return sorted((index.image(doc, i) for i in doc["images"]), key=lambda im: (im.ref, im.id))

    def get(self, ref: str) -> Image:
        """The image `ref` names; raises `ImageNotFound`."""
        doc = self.record.read()
        image_id = index.resolve(doc, ref)
        if image_id is None:
            raise ImageNotFound(f'image "{ref}" not found')
        return index.image(doc, image_id)

    def present(self, ref: str) -> bool:
        """Whether `ref` can run now without a pull (its layers are all unpacked)."""
        try:
            image = self.get(ref)
        except ImageNotFound:
            return False
        layers_there = all(self._layer_path(c).is_dir() for c in image.layers)
        return layers_there and self.blobs.has(image.id)

    def layers_for(self, image: Image | str) -> list[str]:
        """The unpacked layer directories, bottom layer first, as `ContainerConfig.layers`
        wants them."""
        image = self.get(image) if isinstance(image, str) else image
        return [str(self._layer_path(c)) for c in image.layers]

    def config_for(self, image: Image | str) -> ImageConfig:
        image = self.get(image) if isinstance(image, str) else image
        if image.id not in self._configs:
            config = mf.load_json(self.blobs.read(image.id), "image config")
            self._configs[image.id] = mf.image_config(config)
        return copy.deepcopy(self._configs[image.id])  # callers may change theirs

    def mark_used(self, image: Image | str) -> None:
        """Record that a container was created from `image` now (for `gc`'s LRU order).
        Cheap on a pod's start path: a use within `USE_RESOLUTION` seconds of the last
        recorded one changes nothing, and the write is not fsynced (losing it to a power
        cut only makes the image look older to `gc`)."""
        image = self.get(image) if isinstance(image, str) else image
        now = time.time()
        if now - image.last_used < USE_RESOLUTION:
            return
        with self.record.update(durable=False) as doc:
            if image.id in doc["images"]:
                doc["images"][image.id]["last_used"] = now

    def usage(self) -> int:
        """Bytes the store holds: blobs plus unpacked layers."""
        doc = self.record.read()
        blobs = sum(self.blobs.size(d) for d in self.blobs.digests())
        return blobs + sum(int(rec.get("size", 0)) for rec in doc["layers"].values())

    # Getting images

    async def pull(self, ref: str, auth: Credentials | None = None) -> Image:
        """Pull `ref` from its registry (``imagePullPolicy`` is the kubelet's business).
        Raises `InvalidReference` for a malformed name and `PullError` for the rest."""
        parsed = parse(ref)
        auth = auth or {}
        creds = auth.get(parsed.domain) or auth.get(parsed.api_host)
        key = (str(parsed), creds)
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.ensure_future(self._pull(str(parsed), auth))
            self._pulls[key] = task
            task.add_done_callback(lambda t: self._pull_done(key, t))
        return await asyncio.shield(task)

    def _pull_done(
        self, key: tuple[str, tuple[str, str] | None], task: asyncio.Task[Image]
    ) -> None:
        self._pulls.pop(key, None)
        if not task.cancelled():
            task.exception()  # seen, even if every waiter was cancelled

    async def _pull(self, ref: str, auth: Credentials) -> Image:
        started = time.monotonic()
        parsed = parse(ref)
        self._busy += 1
        try:
            try:
                contents = await pull.fetch(self.registry, self.blobs, parsed, auth)
            except RegistryError as e:
                raise PullError(ref, str(e), not_found=e.not_found) from None
            except ContentError as e:
                raise PullError(ref, str(e)) from None
            image = await self._commit(contents, ref)
        except OSError as e:
            raise PullError(ref, f"failed to store image: {e}") from None
        finally:
            self._busy -= 1
        log.info(
            "pulled image=%s id=%s size=%d seconds=%.3f",
            ref,
            image.id,
            image.size,
            time.monotonic() - started,
        )
        return image

    async def import_archive(self, path: str | os.PathLike[str]) -> list[Image]:
        """Import a ``docker save`` or OCI layout archive (compressed or not); raises
        `ArchiveError`."""
        path = Path(path)
        self._busy += 1
        try:
            contents = await asyncio.to_thread(archive.read_archive, path, self.blobs)
            images = [await self._commit(c, str(path)) for c in contents]
        except (ContentError, OSError) as e:
            raise ArchiveError(str(path), str(e)) from None
        finally:
            self._busy -= 1
        for image in images:
            log.info("imported archive=%s image=%s id=%s", path, image.ref, image.id)
        return images

    async def import_dir(self, path: str | os.PathLike[str] | None = None) -> list[Image]:
        """Import the archives of `path` (default: the store's own directory) that are
        new or changed since they were last imported; a bad archive is logged and skipped."""
        directory = Path(path) if path is not None else self.root
        imported: list[Image] = []
        for file in sorted(directory.iterdir()):
            if not file.is_file() or not file.name.endswith(archive.SUFFIXES):
                continue
            st = file.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            if self.record.read()["archives"].get(str(file.resolve())) == stamp:
                continue
            try:
                imported += await self.import_archive(file)
            except ArchiveError as e:
                log.error("cannot import archive=%s: %s", file, e.reason)
                continue
            with self.record.update() as doc:
                doc["archives"][str(file.resolve())] = stamp
        return imported

    async def _commit(self, contents: mf.ImageContents, source: str) -> Image:
        """Unpack the layers of fetched or imported content and record the image."""
        chain = layers.chain_ids(contents.diff_ids)
        sizes: list[int] = []
        for i, (desc, diff_id, chain_id) in enumerate(
            zip(contents.layers, contents.diff_ids, chain, strict=True)
        ):
            sizes.append(await self._unpack(desc.digest, diff_id, chain_id, chain[:i]))
        with self.record.update() as doc:
            now = time.time()
            rec = doc["images"].setdefault(contents.config, {"created": now})
            rec.update(
                manifest=contents.manifest,
                blobs=sorted(set(rec.get("blobs", [])) | set(contents.blobs)),
                layers=chain,
                size=contents.size,
                last_used=now,
            )
            for desc, diff_id, chain_id, size in zip(
                contents.layers, contents.diff_ids, chain, sizes, strict=True
            ):
                doc["layers"][chain_id] = {"diff_id": diff_id, "blob": desc.digest, "size": size}
            for name in contents.names:
                doc["refs"][name] = contents.config
            image = index.image(doc, contents.config)
        log.debug("recorded image=%s id=%s source=%s", image.ref, image.id, source)
        return image

    async def _unpack(self, blob: str, diff_id: str, chain_id: str, below: list[str]) -> int:
        """Unpack layer `chain_id` unless it is there; returns its unpacked size."""
        target = self._layer_path(chain_id)
        while not target.is_dir():
            running = self._unpacks.get(chain_id)
            if running is not None:
                await asyncio.shield(running)
                continue
            done = asyncio.get_running_loop().create_future()
            self._unpacks[chain_id] = done
            try:
                lower = [self._layer_path(c) for c in reversed(below)]
                return await asyncio.to_thread(self._unpack_sync, blob, diff_id, target, lower)
            finally:
                del self._unpacks[chain_id]
                done.set_result(None)
        recorded = self.record.read()["layers"].get(chain_id)
        return int(recorded["size"]) if recorded else _du(target)

    def _unpack_sync(self, blob: str, diff_id: str, target: Path, lower: list[Path]) -> int:
        started = time.monotonic()
        tmp = self.layers_dir / f".tmp-{os.getpid()}-{target.name[:12]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(0o755)
        try:
            with layers.decompressed(self.blobs.path(blob)) as stream:
                result = layers.unpack(stream, tmp, lower)
            if result.diff_id != diff_id:
                raise ContentError(
                    f"layer {blob} unpacks to {result.diff_id}, config says {diff_id}"
                )
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # another process finished it first otherwise
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.debug(
            "unpacked layer blob=%s chain=%s bytes=%d seconds=%.3f",
            blob,
            target.name[:12],
            result.size,
            time.monotonic() - started,
        )
        return result.size

    def _mounted(self, image: Image) -> bool:
        """Whether an overlay mount uses a layer of `image`: a safety net under the
        caller's `in_use`, since deleting a mounted lowerdir breaks a running container."""
        mounted = mounted_layers(self.layers_dir)
        return any(hex_of(c) in mounted for c in image.layers)

    def _layer_path(self, chain_id: str) -> Path:
        return self.layers_dir / hex_of(chain_id)

    # Removing images

    async def remove(self, ref: str, in_use: Callable[[Image], bool] | None = None) -> list[str]:
        """``rmi``: a tag of an image with other tags is only untagged; otherwise the
        image goes with every name, blob and layer no other image shares. Refuses
        (`ImageInUse`) when `in_use` says a container uses it. Returns the ids deleted."""
        with self.record.update() as doc:
            image_id = index.resolve(doc, ref)
            if image_id is None:
                raise ImageNotFound(f'image "{ref}" not found')
            image = index.image(doc, image_id)
            name = index.normalized(ref)
            if name in image.repo_tags and len(image.repo_tags) > 1:
                del doc["refs"][name]
                return []
            if (in_use is not None and in_use(image)) or self._mounted(image):
                raise ImageInUse(f'image "{ref}" ({image.id[7:19]}) is in use by a container')
            doomed_blobs, doomed_layers = index.forget(doc, [image_id])
        await asyncio.to_thread(self._delete, doomed_blobs, doomed_layers)
        return [image_id]

    async def gc(
        self, in_use: Collection[str], bytes_to_free: int, min_age: float = 0.0
    ) -> GCResult:
        """Delete unused images, least recently used first, until `bytes_to_free` bytes
        are freed (the kubelet's image GC under disk pressure). `in_use` holds ids or
        names of images that containers use; images used within `min_age` seconds are
        kept (the kubelet's ``ImageMinimumGCAge``). Also deletes old orphaned content.
        Does nothing while a pull or import runs (the next round will)."""
        if self._busy:
            log.info("image gc postponed: %d pulls or imports in progress", self._busy)
            return GCResult([], 0)
        result = GCResult([], await asyncio.to_thread(self._sweep_orphans))
        doc = self.record.read()
        keep = {i for i in (index.resolve(doc, r) for r in in_use) if i is not None}
        now = time.time()
        candidates = sorted(
            (index.image(doc, i) for i in doc["images"] if i not in keep),
            key=lambda im: im.last_used,
        )
        for image in candidates:
            if result.freed >= bytes_to_free or self._busy:
                break
            if now - image.last_used < min_age or self._mounted(image):
                continue
            with self.record.update() as fresh:
                if image.id not in fresh["images"]:
                    continue
                doomed_blobs, doomed_layers = index.forget(fresh, [image.id])
            result.freed += await asyncio.to_thread(self._delete, doomed_blobs, doomed_layers)
            result.removed.append(image.id)
            log.info("image gc removed image=%s id=%s", image.ref, image.id)
        return result

    def _delete(self, blobs: list[str], chain_ids: list[tuple[str, int]]) -> int:
        freed = sum(self.blobs.delete(d) for d in blobs)
        for chain_id, size in chain_ids:
            freed += size
            self._trash(self._layer_path(chain_id))
        for digest in blobs:
            self._configs.pop(digest, None)
        return freed

    def _trash(self, path: Path) -> None:
        trash = self.layers_dir / f".trash-{os.getpid()}-{path.name[:12]}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _sweep_orphans(self) -> int:
        doc = self.record.read()
        owned = {b for rec in doc["images"].values() for b in rec.get("blobs", [])}
        owned_layers = {hex_of(c) for c in doc["layers"]}
        cutoff = time.time() - ORPHAN_AGE
        freed = 0
        for digest in self.blobs.digests():
            if digest not in owned and self.blobs.path(digest).stat().st_mtime < cutoff:
                freed += self.blobs.delete(digest)
        for layer in self.layers_dir.iterdir():
            if layer.name.startswith(".") or layer.name in owned_layers:
                continue
            if layer.stat().st_mtime < cutoff:
                freed += _du(layer)
                self._trash(layer)
        return freed


def _clear_leftovers(tmp_root: Path, layers_dir: Path) -> None:
    """Remove the work directories of processes that died (crash leftovers)."""
    tmp_root.mkdir(parents=True, exist_ok=True)
    for entry in [*tmp_root.iterdir(), *layers_dir.glob(".*")]:
        owner = entry.name.split("-")[1] if entry.name.startswith(".") else entry.name
        if not (owner.isdigit() and _alive(int(owner))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def mounted_layers(layers_dir: Path, mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """Names of the directories of `layers_dir` that an overlay mount has as a lowerdir."""
    prefix = str(layers_dir) + "/"
    names = set()
    with open(mountinfo) as f:
        for line in f:
            _, sep, tail = line.partition(" - ")
            fields = tail.split(" ")
            if not sep or fields[0] != "overlay" or len(fields) < 3:
                continue
            for option in fields[2].split(","):
                if option.startswith("lowerdir="):
                    for d in option[len("lowerdir=") :].split(":"):
                        if d.startswith(prefix):
                            names.add(d[len(prefix) :].split("/")[0])
    return names


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
