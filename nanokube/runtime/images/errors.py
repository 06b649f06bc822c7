"""The image store's errors; each message is written for a pod event or a terminal.

- `ImageError`: base of everything below
  - `InvalidReference`: the image name does not parse (the kubelet's ``InvalidImageName``)
  - `ImageNotFound`: no such image in the local store (``ErrImageNeverPull`` when the
    policy is ``Never``; ``nanokube images rm`` of an unknown name)
  - `ImageInUse`: ``rm`` of an image a container still uses
  - `PullError`: a pull or an import failed (the kubelet's ``ErrImagePull``); the
    message is the whole story, as containerd words it:
    ``failed to pull and unpack image "REF": REASON``
  - `ArchiveError`: an archive could not be imported
    (``failed to import image archive "PATH": REASON``)
  - `ContentError`: stored or received content is not what its digest or format says
    (digest mismatch, unknown media type, a layer entry escaping its directory)
"""

from __future__ import annotations


class ImageError(Exception):
    """Base of the image store's errors; ``str()`` is the user-facing message."""


class InvalidReference(ImageError):
    pass


class ImageNotFound(ImageError):
    pass


class ImageInUse(ImageError):
    pass


class ContentError(ImageError):
    pass


class PullError(ImageError):
    """A failed pull or import of `ref`; `reason` is the part after the image name."""

    def __init__(self, ref: str, reason: str, *, not_found: bool = False) -> None:
        super().__init__(f'failed to pull and unpack image "{ref}": {reason}')
        self.ref = ref
        self.reason = reason
        self.not_found = not_found
        """The registry said the name or tag does not exist (not an auth or network
        failure), so retrying will not help until someone pushes it."""


class ArchiveError(ImageError):
    """A failed import of the archive at `path`; `reason` is what went wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f'failed to import image archive "{path}": {reason}')
        self.path = path
        self.reason = reason
