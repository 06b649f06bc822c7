"""The patch types of `kubectl patch` and client-side `kubectl apply`, in one place.

The API server picks one function by the request's Content-Type:

- `application/json-patch+json`: `json_patch` (RFC 6902),
- `application/merge-patch+json`: `json_merge_patch` (RFC 7386),
- `application/strategic-merge-patch+json`: `strategic_merge_patch`, whose list merge keys
  and strategies come from the Kubernetes schemas.

Each takes decoded JSON, never mutates its inputs, and raises the `Status` error upstream
returns for a patch that is malformed (400) or does not apply (422). The implementations
live in `patch_json` and `patch_strategic`; this module is their public face.
"""

from __future__ import annotations

from nanokube.api.patch_json import (
    MAX_JSON_PATCH_COPY_BYTES,
    MAX_JSON_PATCH_OPERATIONS,
    RequestEntityTooLarge,
    copy_json,
    decode_pointer_token,
    escape_pointer_token,
    json_equal,
    json_merge_patch,
    json_patch,
)
from nanokube.api.patch_strategic import strategic_merge_patch

__all__ = [
    "MAX_JSON_PATCH_COPY_BYTES",
    "MAX_JSON_PATCH_OPERATIONS",
    "RequestEntityTooLarge",
    "copy_json",
    "decode_pointer_token",
    "escape_pointer_token",
    "json_equal",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
]
