"""The public API of `nanokube.runtime.images` is its curated ``__all__``."""

from __future__ import annotations

from nanokube.runtime import images


def test_public_api() -> None:
    assert sorted(images.__all__) == [
        "ArchiveError",
        "ContentError",
        "GCResult",
        "Image",
        "ImageError",
        "ImageInUse",
        "ImageNotFound",
        "ImageStore",
        "InvalidReference",
        "PullError",
        "credentials_from_dockerconfig",
        "normalize",
    ]
    assert all(hasattr(images, name) for name in images.__all__)
    errors = ["ArchiveError", "ContentError", "ImageInUse", "ImageNotFound", "InvalidReference"]
    assert all(issubclass(getattr(images, e), images.ImageError) for e in [*errors, "PullError"])
