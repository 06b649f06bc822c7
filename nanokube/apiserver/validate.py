"""The admission of an object's content: defaulting, field validation, schema and semantic checks.

Runs on every create and update, in upstream's order: `decode` checks types
and unknown fields per `fieldValidation` (Strict: 400, Warn: a `Warning`
header, Ignore: nothing) and fills defaults; the registry then prepares the
object (PrepareForCreate/Update); `validate` checks the JSON schema, the
kind's semantic rules and, on update, its immutability rules. All causes are
reported together in one 422, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import errors, validation
from nanokube.api.kinds import Kind

Obj = dict[str, Any]


def decode(kind: Kind, obj: Obj, field_validation: str, warnings: list[str]) -> bool:
    """What upstream does while decoding a body: type checks, unknown fields, defaults.

    Returns whether the schema must be checked again after defaulting (see
    `validation.decode_check`).
    """
    recheck = validation.decode_check(kind, obj)  # wrong types are a 400, before defaults
    if field_validation != "Ignore":
        unknown = validation.unknown_fields(kind, obj)
        if unknown:
            if field_validation == "Strict":
                raise validation.strict_error(kind, unknown)
            warnings.extend(validation.unknown_field_warning(p) for p in unknown)
    kind.defaults(obj)
    return recheck


def validate(kind: Kind, obj: Obj, old: Obj | None, schema: bool = True) -> None:
    """The schema and the kind's semantic rules (and immutability on update): one 422 for all."""
    causes = validation.schema_causes(kind, obj) if schema else []
    causes += kind.validate(obj)
    if old is not None:
        causes += kind.validate_update(obj, old)
    if causes:
        raise errors.invalid(kind.kind, obj["metadata"].get("name", ""), causes, kind.group)
