"""Helpers over `metadata` and common object paths. Pure functions, no I/O."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    """Kubernetes timestamps: RFC 3339 in UTC with whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_micro() -> str:
    """MicroTime, as Leases and events.k8s.io Events carry."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float:
    """Seconds since the epoch from an RFC 3339 timestamp (with or without fractions)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def new_uid() -> str:
    return str(uuid.uuid4())


def name(obj: Obj) -> str:
    return obj.get("metadata", {}).get("name", "") or ""


def namespace(obj: Obj) -> str:
    return obj.get("metadata", {}).get("namespace", "") or ""


def labels(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def get_path(obj: Any, path: tuple[str, ...] | list[str], default: Any = None) -> Any:
    """`get_path(o, ("spec", "replicas"))`; missing or null steps give `default`."""
    for step in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(step)
        if obj is None:
            return default
    return obj


def set_path(obj: Obj, path: tuple[str, ...] | list[str], value: Any) -> None:
    for step in path[:-1]:
        nxt = obj.get(step)
        if not isinstance(nxt, dict):
            nxt = obj[step] = {}
        obj = nxt
    obj[path[-1]] = value


def age(timestamp: str | None, now: float | None = None) -> str:
    """Human duration since `timestamp`, as kubectl prints it: 45s, 3m, 2m30s, 5h, 3d, 2y."""
    if not timestamp:
        return "<unknown>"
    seconds = int((now if now is not None else time.time()) - parse_time(timestamp))
    return human_duration(seconds)


def human_duration(seconds: int) -> str:
    """The rules of apimachinery's `duration.HumanDuration`."""
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m{s}s" if s else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h{m}m" if m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d{h}h" if h else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        d = (hours // 24) % 365
        return f"{hours // 24 // 365}y{d}d" if d else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"
