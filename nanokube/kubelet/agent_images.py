"""The image store as the pod workers' `ImageService`, and the node's `status.images`.

The kubelet core asks three things of images (`services.ImageService`):
whether one is present, to pull one with the pod's `imagePullSecrets`, and
its unpacked layers and config. `nanokube.runtime.images.ImageStore` does
the work; this adapter turns pull secrets into registry credentials (the
`.dockerconfigjson` of `kubernetes.io/dockerconfigjson` Secrets, first
secret winning per host, as the kubelet merges them) and the store's errors
into the waiting reasons a container shows (`ErrImagePull`,
`InvalidImageName`).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from nanokube.kubelet.services import ImagePullError, ResolvedImage
from nanokube.runtime import images

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# Upstream reports at most this many images in `status.images` (--node-status-max-images).
MAX_STATUS_IMAGES = 50


class StoreImages:
    """`ImageService` over an `ImageStore`."""

    def __init__(self, store: images.ImageStore) -> None:
        self.store = store

    async def present(self, image: str) -> bool:
        try:
            return self.store.present(image)
        except images.InvalidReference:
            return False

    async def pull(self, image: str, pull_secrets: list[Obj]) -> None:
        configs: list[bytes | str | dict[Any, Any]] = []
        for secret in pull_secrets:
            data = (secret.get("data") or {}).get(".dockerconfigjson")
            if data:
                configs.append(base64.b64decode(data))
        try:
            creds = images.credentials_from_dockerconfig(configs) if configs else None
            await self.store.pull(image, creds)
        except images.InvalidReference as e:
            raise ImagePullError(str(e), "InvalidImageName") from e
        except images.ImageError as e:
            raise ImagePullError(f'failed to pull and unpack image "{image}": {e}') from e
        except ValueError as e:  # a malformed .dockerconfigjson
            raise ImagePullError(f"bad imagePullSecrets: {e}") from e

    async def resolve(self, image: str) -> ResolvedImage:
        try:
            found = self.store.get(image)
            layers = self.store.layers_for(found)
            config = self.store.config_for(found)
        except images.ImageError as e:
            raise ImagePullError(f'image "{image}" is not present: {e}', "ErrImageNeverPull") from e
        self.store.mark_used(found)
        image_id = found.repo_digests[0] if found.repo_digests else found.id
        return ResolvedImage(layers=layers, config=config, image_id=image_id, size=found.size)

    def node_images(self) -> list[Obj]:
        """`status.images` of the Node: names (digests first, then tags) and sizes,
        largest first as upstream sorts them."""
        listed = sorted(self.store.list_images(), key=lambda im: im.size, reverse=True)
        return [
            {"names": [*im.repo_digests, *im.repo_tags] or [im.id], "sizeBytes": im.size}
            for im in listed[:MAX_STATUS_IMAGES]
        ]
