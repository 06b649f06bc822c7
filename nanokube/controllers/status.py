"""Status conditions and status writes, as every workload controller does them.

Conditions follow upstream's `SetDeploymentCondition`/`SetCondition` rules: a
condition with the same status and reason as the current one changes nothing
(its timestamps stay, so an unchanged status compares equal and is not
written); a new reason with the same status keeps `lastTransitionTime`.

`write_status` PUTs an object's status through `/status` only when it differs
from what the object holds, retrying once on a stale read with a fresh copy
(upstream's `updateReplicaSetStatus`); the caller's object is not mutated.
"""

from __future__ import annotations

import logging
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.kinds import Kind
from nanokube.api.patch_json import copy_json
from nanokube.client.interface import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]

STATUS_UPDATE_RETRIES = 1


def new_condition(
    type: str, status: str, reason: str, message: str, *, update_time: bool = True
) -> Obj:
    """A condition stamped now; `update_time` adds `lastUpdateTime` (Deployments have it)."""
    now = meta.now_rfc3339()
    cond: Obj = {"type": type, "status": status}
    if update_time:
        cond["lastUpdateTime"] = now
    cond.update({"lastTransitionTime": now, "reason": reason, "message": message})
    return cond


def get_condition(conditions: list[Obj], type: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == type), None)


def remove_condition(conditions: list[Obj], type: str) -> list[Obj]:
    return [c for c in conditions if c.get("type") != type]


def set_condition(conditions: list[Obj], cond: Obj) -> None:
    """Put `cond` in `conditions` (in place) by upstream's rules (see the module docstring)."""
    current = get_condition(conditions, cond["type"])
    if current is not None:
        if current.get("status") == cond["status"] and current.get("reason") == cond.get("reason"):
            return
        if current.get("status") == cond["status"]:
            cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
        conditions.remove(current)
    conditions.append(cond)


async def write_status(client: Client, kind: Kind, obj: Obj, status: Obj) -> Obj:
    """The object with `status` written (or as it was, if already equal)."""
    if (obj.get("status") or {}) == status:
        return obj
    current = obj
    for attempt in range(STATUS_UPDATE_RETRIES + 1):
        body = copy_json(current)
        body["status"] = status
        try:
            return await client.update(kind, body, subresource="status")
        except errors.Conflict:
            if attempt == STATUS_UPDATE_RETRIES:
                raise
            md = current["metadata"]
            current = await client.get(kind, md["name"], md.get("namespace", ""))
    raise AssertionError("unreachable")
