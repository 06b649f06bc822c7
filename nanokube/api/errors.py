"""Kubernetes `Status` errors.

Every error the API returns is one of these, each mapped to its HTTP code and
Kubernetes `reason`, so that kubectl prints `Error from server (Reason): message`:

- StatusError (500 InternalError)
  - BadRequest (400 BadRequest): malformed body, bad query parameter
  - Unauthorized (401 Unauthorized)
  - Forbidden (403 Forbidden)
  - NotFound (404 NotFound)
  - MethodNotAllowed (405 MethodNotAllowed)
  - NotAcceptable (406 NotAcceptable)
  - AlreadyExists (409 AlreadyExists)
  - Conflict (409 Conflict): stale resourceVersion, or a state clash
  - Expired (410 Expired): resourceVersion older than the compacted history
  - UnsupportedMediaType (415 UnsupportedMediaType)
  - Invalid (422 Invalid): with `details.causes`
  - TooManyRequests (429 TooManyRequests)
  - Timeout (504 Timeout)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One reason an object is invalid: `field` is a path like `spec.containers[0].name`."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


class StatusError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        group: str = "",
        name: str = "",
        causes: list[Cause] | None = None,
        retry_after: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.group = group
        self.name = name
        self.causes = causes or []
        self.retry_after = retry_after

    def to_status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            status["details"] = details
        return status


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"


class Conflict(StatusError):
    code = 409
    reason = "Conflict"


class Expired(StatusError):
    code = 410
    reason = "Expired"


class UnsupportedMediaType(StatusError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(StatusError):
    code = 422
    reason = "Invalid"


class TooManyRequests(StatusError):
    code = 429
    reason = "TooManyRequests"


class Timeout(StatusError):
    code = 504
    reason = "Timeout"


def not_found(resource: str, name: str, group: str = "") -> NotFound:
    """The upstream wording: `pods "web" not found`."""
    qualified = f"{resource}.{group}" if group else resource
    return NotFound(f'{qualified} "{name}" not found', kind=resource, group=group, name=name)


def already_exists(resource: str, name: str, group: str = "") -> AlreadyExists:
    qualified = f"{resource}.{group}" if group else resource
    return AlreadyExists(
        f'{qualified} "{name}" already exists', kind=resource, group=group, name=name
    )


def conflict(resource: str, name: str, group: str = "") -> Conflict:
    qualified = f"{resource}.{group}" if group else resource
    return Conflict(
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource,
        group=group,
        name=name,
    )


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> Invalid:
    """The upstream wording: `Pod "x" is invalid: [field: message, ...]`."""
    parts = [f"{c.field}: {c.message}" for c in causes]
    body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return Invalid(
        f'{qualified} "{name}" is invalid: {body}', kind=kind, group=group, name=name, causes=causes
    )
