"""What a pod asks of a node: resource requests, host ports, as the scheduler counts them.

Upstream's `resourcehelper.PodRequests` and the scheduler's `NodeInfo` arithmetic:
quantities become integers (cpu in millicores, everything else in units, both
rounded up as `Quantity.MilliValue()`/`Value()` do), so the per-node checks of
the filter loop are integer comparisons. A pod's request is the larger of

- the sum of its app containers plus its sidecars (init containers with
  `restartPolicy: Always`, which keep running), and
- the largest single init container, plus the sidecars started before it,

plus the pod's `overhead`. Scoring uses the "non-zero" request: a container
that asks for no cpu or memory counts as 100m / 200Mi, so that best-effort pods
still spread (upstream's `schedutil.GetNonzeroRequests`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, NamedTuple

from nanokube.api.validators import QuantityError, parse_quantity

Obj = dict[str, Any]

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL = "ephemeral-storage"
PODS = "pods"
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@lru_cache(maxsize=4096)
def milli_value(quantity: str | int | float) -> int:
    """`Quantity.MilliValue()`: thousandths, rounded up; 0 for a malformed value."""
    try:
        return math.ceil(parse_quantity(quantity) * 1000)
    except QuantityError:
        return 0


@lru_cache(maxsize=4096)
def value(quantity: str | int | float) -> int:
    """`Quantity.Value()`: whole units, rounded up; 0 for a malformed value."""
    try:
        return math.ceil(parse_quantity(quantity))
    except QuantityError:
        return 0


def amount(resource: str, quantity: Any) -> int:
    """A quantity in the scheduler's unit for `resource` (millicores for cpu)."""
    return milli_value(quantity) if resource == CPU else value(quantity)


def resource_list(resources: Obj | None) -> dict[str, int]:
    """A `ResourceList` (`{"cpu": "500m", ...}`) in scheduler units."""
    return {k: amount(k, v) for k, v in (resources or {}).items()}


class PodRequests(NamedTuple):
    cpu: int  # millicores
    memory: int
    ephemeral: int
    scalar: dict[str, int]  # extended resources, hugepages: name -> units
    nonzero_cpu: int  # for scoring: 100m for a container without a cpu request
    nonzero_memory: int  # likewise 200Mi


def _add(total: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        total[k] = total.get(k, 0) + v


def _max(total: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        if v > total.get(k, 0):
            total[k] = v


def _container_requests(c: Obj, nonzero: bool) -> dict[str, int]:
    reqs = resource_list((c.get("resources") or {}).get("requests"))
    if nonzero:
        reqs = {CPU: reqs.get(CPU) or DEFAULT_MILLI_CPU, MEMORY: reqs.get(MEMORY) or DEFAULT_MEMORY}
    return reqs


def _pod_totals(spec: Obj, nonzero: bool) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(total, _container_requests(c, nonzero))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        reqs = _container_requests(c, nonzero)
        if c.get("restartPolicy") == "Always":
            _add(total, reqs)
            _add(sidecars, reqs)
            _max(init_max, sidecars)
        else:
            running = dict(sidecars)
            _add(running, reqs)
            _max(init_max, running)
    _max(total, init_max)
    if not nonzero:
        _add(total, resource_list(spec.get("overhead")))
    else:
        overhead = resource_list(spec.get("overhead"))
        for k in (CPU, MEMORY):
            total[k] = total.get(k, 0) + overhead.get(k, 0)
    return total


def pod_requests(spec: Obj) -> PodRequests:
    """The pod's requests as the scheduler counts them against a node's allocatable."""
    total = _pod_totals(spec, nonzero=False)
    nonzero = _pod_totals(spec, nonzero=True)
    cpu = total.pop(CPU, 0)
    memory = total.pop(MEMORY, 0)
    ephemeral = total.pop(EPHEMERAL, 0)
    scalar = {k: v for k, v in total.items() if v}
    return PodRequests(cpu, memory, ephemeral, scalar, nonzero.get(CPU, 0), nonzero.get(MEMORY, 0))


def host_ports(spec: Obj) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of every container port that claims a host port."""
    out = []
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or ():
            for p in c.get("ports") or ():
                port = p.get("hostPort") or 0
                if port > 0:
                    out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", port))
    return out
