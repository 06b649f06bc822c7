"""Priority admission: a pod's `priorityClassName` resolved into `spec.priority`.

Upstream's `plugin/pkg/admission/priority`: on pod create, the named
PriorityClass (or, without a name, the cluster's `globalDefault` class) gives
the pod its integer `spec.priority` and its `spec.preemptionPolicy`, which is
all the scheduler reads. The two system classes exist in every cluster
(upstream's API server creates them at start), so they resolve even when no
object has been stored for them. A pod that names an unknown class is
forbidden, as is one whose own `spec.priority` disagrees with its class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanokube.api import errors
from nanokube.api.resources.groups import PRIORITY_CLASS, SYSTEM_PRIORITY_CLASSES

if TYPE_CHECKING:
    from nanokube.apiserver.rest import ResourceStore

Obj = dict[str, Any]

DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"


def _forbidden(pod: Obj, message: str) -> errors.Forbidden:
    name = (pod.get("metadata") or {}).get("name", "")
    return errors.Forbidden(f'pods "{name}" is forbidden: {message}', kind="pods", name=name)


def _global_default(resources: ResourceStore) -> Obj | None:
    """The default class; with several (a race upstream tolerates), the lowest value wins."""
    found: Obj | None = None
    for _, pc in resources.cache.prefix(PRIORITY_CLASS.prefix()).items():
        if pc.get("globalDefault") and (
            found is None or pc.get("value", 0) < found.get("value", 0)
        ):
            found = pc
    return found


async def resolve_priority(resources: ResourceStore, pod: Obj) -> None:
    """Set `spec.priority` (and `priorityClassName`, `preemptionPolicy`) of a pod being created."""
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    if name:
        pc = resources.cache.get(PRIORITY_CLASS.key("", name))
        if pc is None:
            await resources.fresh()  # perhaps created a moment ago
            pc = resources.cache.get(PRIORITY_CLASS.key("", name))
        if pc is None and name in SYSTEM_PRIORITY_CLASSES:
            pc = {
                "value": SYSTEM_PRIORITY_CLASSES[name],
                "preemptionPolicy": DEFAULT_PREEMPTION_POLICY,
            }
        if pc is None:
            raise _forbidden(pod, f"no PriorityClass with name {name} was found")
    else:
        pc = _global_default(resources)
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    value = int(pc.get("value", 0)) if pc is not None else 0
    policy = (pc or {}).get("preemptionPolicy") or DEFAULT_PREEMPTION_POLICY
    if spec.get("priority") is not None and spec["priority"] != value:
        raise _forbidden(
            pod,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
            f"priority admission controller computed {value} from the given PriorityClass name",
        )
    if spec.get("preemptionPolicy") is not None and spec["preemptionPolicy"] != policy:
        raise _forbidden(
            pod,
            f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be provided "
            f"in pod spec; priority admission controller computed {policy} from the given "
            "PriorityClass name",
        )
    spec["priority"] = value
    spec["preemptionPolicy"] = policy
