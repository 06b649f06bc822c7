"""What the pod workers need from the image store and the volume manager, as Protocols.

The kubelet core does not import the image store (`nanokube.runtime.images`) or the
volume manager (`nanokube.kubelet.volumes*`): the agent passes objects that fit these
narrow Protocols, so each side can change behind them and tests can use the small
stand-ins below.

- `ImageService`: ``present`` / ``pull`` / ``resolve``. The pull *policy* is applied by
  the worker (upstream's ``imageManager.EnsureImageExists``), because it owns the
  events (Pulling, Pulled, Failed) and the ImagePullBackOff.
- `VolumeManager`: ``setup(pod)`` returns volume name → host path for every volume
  of the pod (before any container starts); ``teardown(pod)`` releases them after the
  last container has stopped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Protocol

from nanokube.runtime.contract import ImageConfig

Obj = dict[str, Any]


class ImagePullError(Exception):
    """A pull failed; ``reason`` is the waiting reason the container shows
    (``ErrImagePull``, ``InvalidImageName``, ``ErrImageNeverPull``)."""

    def __init__(self, message: str, reason: str = "ErrImagePull") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ResolvedImage:
    """An image present on the node, ready to become a container's rootfs."""

    layers: list[str]
    """Unpacked layer directories, bottom first."""
    config: ImageConfig
    image_id: str
    """What ``containerStatuses[].imageID`` shows (``docker.io/library/x@sha256:...``)."""
    size: int = 0


class ImageService(Protocol):
    async def present(self, image: str) -> bool: ...

    async def pull(self, image: str, pull_secrets: list[Obj]) -> None:
        """Pull `image` with the pod's ``imagePullSecrets`` (Secret objects of type
        ``kubernetes.io/dockerconfigjson``); raises `ImagePullError`."""

    async def resolve(self, image: str) -> ResolvedImage:
        """The layers and config of a present image; raises `ImagePullError` if absent."""


class VolumeManager(Protocol):
    async def setup(self, pod: Obj) -> dict[str, str]:
        """Prepare every volume of `pod`; volume name → host path. Raises on failure
        (the message becomes a FailedMount event)."""

    async def teardown(self, pod: Obj) -> None: ...


@dataclass
class StaticImages:
    """An `ImageService` over fixed local directories: the busybox test rootfs until
    the image store is wired, and tests. Names match with or without a tag."""

    images: dict[str, ResolvedImage] = field(default_factory=dict)

    def _find(self, image: str) -> ResolvedImage | None:
        if image in self.images:
            return self.images[image]
        base = image.rsplit("@", 1)[0]
        if ":" in base.rsplit("/", 1)[-1]:
            base = base.rsplit(":", 1)[0]
        return self.images.get(base)

    async def present(self, image: str) -> bool:
        return self._find(image) is not None

    async def pull(self, image: str, pull_secrets: list[Obj]) -> None:
        if self._find(image) is None:
            raise ImagePullError(
                f'failed to pull and unpack image "{image}": not found in the local image set'
            )

    async def resolve(self, image: str) -> ResolvedImage:
        found = self._find(image)
        if found is None:
            raise ImagePullError(f'image "{image}" is not present', "ErrImageNeverPull")
        return found


class HostPathVolumes:
    """A `VolumeManager` for ``hostPath`` and ``emptyDir`` volumes only (emptyDir as a
    plain directory under `root`): enough for tests and for an agent without the full
    volume manager."""

    def __init__(self, root: str) -> None:
        self.root = root

    async def setup(self, pod: Obj) -> dict[str, str]:
        uid = pod["metadata"]["uid"]
        paths = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if "hostPath" in vol:
                path = vol["hostPath"]["path"]
                if vol["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    os.makedirs(path, exist_ok=True)
                paths[vol["name"]] = path
            elif "emptyDir" in vol:
                path = os.path.join(self.root, uid, vol["name"])
                os.makedirs(path, mode=0o777, exist_ok=True)
                os.chmod(path, 0o777)
                paths[vol["name"]] = path
            else:
                kind = next((k for k in vol if k != "name"), "unknown")
                raise ValueError(f'volume "{vol["name"]}": {kind} volumes are not supported')
        return paths

    async def teardown(self, pod: Obj) -> None:
        shutil.rmtree(os.path.join(self.root, pod["metadata"]["uid"]), ignore_errors=True)
