"""Fetching an image's content from a registry into the blob store.

Order, as containerd's resolver and fetcher do it: resolve the name to a manifest (by
tag, or by digest when pinned), descend through an index to the host platform's
manifest, then fetch the config and the layers (a few at a time). Every blob is
verified against its digest before it is stored, and blobs already present are not
fetched again, so a re-pull of a known image costs one manifest request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from nanokube.runtime.images import manifest as mf
from nanokube.runtime.images.blobs import BlobStore
from nanokube.runtime.images.errors import ContentError
from nanokube.runtime.images.reference import Reference
from nanokube.runtime.images.registry import Credentials, RegistryClient, RegistryError

log = logging.getLogger(__name__)

PARALLEL_BLOBS = 3
"""Concurrent layer downloads per image (containerd's default is 3 as well)."""


async def fetch(
    client: RegistryClient, blobs: BlobStore, ref: Reference, auth: Credentials
) -> mf.ImageContents:
    """Download what `ref` needs into `blobs`; raises `registry.RegistryError` or
    `ContentError`."""
    try:
        body, content_type, header_digest = await client.manifest(ref, ref.digest or ref.tag, auth)
    except RegistryError as e:
        # containerd's wording, with the registry's own words after it.
        detail = f"{ref}: not found ({e})" if e.not_found else str(e)
        raise RegistryError(
            f'failed to resolve reference "{ref}": {detail}', not_found=e.not_found, status=e.status
        ) from None
    digest = mf.sha256_digest(body)
    if ref.digest and digest != ref.digest:
        raise ContentError(f"manifest digest mismatch: asked for {ref.digest}, got {digest}")
    if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
        raise ContentError(f"manifest digest mismatch: registry says {header_digest}, got {digest}")
    top = digest
    doc = mf.load_json(body, "manifest")
    extra: list[str] = []
    if mf.media_type_of(doc, content_type) in mf.INDEX_TYPES:
        blobs.put(body, digest)
        extra.append(digest)
        chosen = mf.pick_platform(doc)
        body, content_type, _ = await client.manifest(ref, chosen.digest, auth)
        digest = mf.sha256_digest(body)
        if digest != chosen.digest:
            raise ContentError(f"manifest digest mismatch: expected {chosen.digest}, got {digest}")
        doc = mf.load_json(body, "manifest")
        if mf.media_type_of(doc, content_type) not in mf.MANIFEST_TYPES:
            raise ContentError("manifest list entry is not an image manifest")
    blobs.put(body, digest)
    config, layers = mf.parse_manifest(doc)
    await _blob(client, blobs, ref, config, auth)
    limit = asyncio.Semaphore(PARALLEL_BLOBS)

    async def one(layer: mf.Descriptor) -> None:
        async with limit:
            await _blob(client, blobs, ref, layer, auth)

    try:
        async with asyncio.TaskGroup() as tg:
            for layer in layers:
                tg.create_task(one(layer))
    except BaseExceptionGroup as group:
        raise _first(group) from None
    diff_ids = mf.diff_ids(mf.load_json(blobs.read(config.digest), "image config"))
    if len(diff_ids) != len(layers):
        raise ContentError(f"config lists {len(diff_ids)} layers, manifest {len(layers)}")
    names = [str(ref.with_digest(top))]
    if ref.tag and not ref.digest:
        names.insert(0, str(ref))
    return mf.ImageContents(digest, config.digest, layers, diff_ids, names, extra)


async def _blob(
    client: RegistryClient, blobs: BlobStore, ref: Reference, d: mf.Descriptor, auth: Credentials
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        return client.blob(ref, d.digest, auth)

    if await blobs.ingest(d.digest, d.size, stream):
        log.info("fetched blob image=%s digest=%s size=%d", ref, d.digest, d.size)


def _first(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    """The first real error of a TaskGroup failure (the others are its consequences)."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
