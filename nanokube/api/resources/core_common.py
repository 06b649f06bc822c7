"""Small pieces every core/v1 declaration shares: the Age column and cell helpers."""

from __future__ import annotations

from typing import Any

from nanokube.api.kinds import Column
from nanokube.api.meta import age

Obj = dict[str, Any]

AGE = Column(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
)


def age_cell(obj: Obj) -> str:
    return age((obj.get("metadata") or {}).get("creationTimestamp"))


def spec_of(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def status_of(obj: Obj) -> Obj:
    return obj.get("status") or {}


def format_labels(labels: dict[str, str] | None) -> str:
    """`labels.FormatLabels`: sorted `k=v` pairs, or `<none>`."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def container_cells(spec: Obj) -> tuple[str, str]:
    """`layoutContainerCells`: container names and images, comma-separated."""
    containers = spec.get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )
