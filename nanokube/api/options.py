"""Options of list/watch and of writes, shared by the API server and the in-process client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Filter = Callable[[dict[str, Any]], bool]


@dataclass
class ListOptions:
    match: Filter | None = None  # label and field selectors, compiled into one filter
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Strict"  # Ignore | Warn | Strict
    field_manager: str = ""
