"""Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`.

kubectl asks for `application/json;as=Table` and prints the cells as they come;
`row.object` carries the object's metadata (PartialObjectMetadata) so that
`-A`, `-L` and `--show-labels` work, or the whole object with
`includeObject=Object` (`--sort-by`).
"""

from __future__ import annotations

from typing import Any

from nanokube.api.kinds import Column, Kind

Obj = dict[str, Any]

NAME_COLUMN = Column(
    "Name",
    "string",
    "name",
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated.",
)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _places_name(kind: Kind) -> bool:
    return any(c.format == "name" for c in kind.columns)


def column_definitions(kind: Kind) -> list[dict[str, Any]]:
    own = [c.to_dict() for c in kind.columns]
    return own if _places_name(kind) else [NAME_COLUMN.to_dict(), *own]


def row(kind: Kind, obj: Obj, include: str) -> dict[str, Any]:
    cells = kind.row(obj)
    if not _places_name(kind):
        cells = [obj.get("metadata", {}).get("name", ""), *cells]
    if include == "Object":
        embedded = obj
    elif include == "None":
        embedded = None
    else:
        embedded = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {}),
        }
    out: dict[str, Any] = {"cells": cells, "object": embedded}
    return out


def table(
    kind: Kind, objects: list[Obj], list_meta: Obj, include: str, with_columns: bool = True
) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(kind) if with_columns else [],
        "rows": [row(kind, o, include) for o in objects],
    }
