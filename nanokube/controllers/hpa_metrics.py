"""Where the HPA controller reads pod usage: the resource metrics API (`metrics.k8s.io`).

Upstream's HPA asks the metrics API (`PodMetricses(ns).List(selector)`) and
reduces each PodMetrics to one figure per pod: the sum over its containers of
one resource (or one named container's), in milli-units (`Quantity.MilliValue`:
millicores, millibytes). This module does the same:

- `PodMetricsLister` is the one call the controller makes; `APIPodMetrics`
  makes it through a `Client` (over HTTP it is a GET of
  `/apis/metrics.k8s.io/v1beta1/namespaces/NS/pods?labelSelector=...`), and the
  API server's own `MetricsAPI` has the same method, for a controller in the
  server process (the in-process client reaches stored kinds only).
- `resource_metrics` turns the list into `PodMetric`s by pod name, with the
  errors upstream's metrics client reports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

from nanokube.api import meta
from nanokube.api.kinds import Kind
from nanokube.api.validators import parse_quantity
from nanokube.client.interface import Client

Obj = dict[str, Any]

# The metrics API's PodMetrics, as a client names it (served, never stored).
POD_METRICS = Kind(
    group="metrics.k8s.io",
    version="v1beta1",
    kind="PodMetrics",
    plural="pods",
    namespaced=True,
    verbs=("get", "list"),
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(h|ms|m|s|us|µs|ns)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


class MetricsError(Exception):
    """Usage could not be had; the message is what the HPA reports in events and conditions."""


class PodMetricsLister(Protocol):
    async def pod_metrics_list(
        self, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Obj:
        """A PodMetricsList of the pods in `namespace` matching `label_selector`."""
        ...


class APIPodMetrics:
    """Pod metrics read through a client (the HTTP client reaches the metrics API)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def pod_metrics_list(
        self, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Obj:
        return await self.client.list(
            POD_METRICS, namespace, label_selector=label_selector, field_selector=field_selector
        )


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of one resource, in milli-units, and when it was measured."""

    value: int
    timestamp: float
    window: float


def milli_value(quantity: Any) -> int:
    """`Quantity.MilliValue()`: the value in thousandths, rounded up."""
    return math.ceil(parse_quantity(quantity) * 1000)


def parse_duration(text: str) -> float:
    """Seconds of a Go duration string (`15s`, `1m30s`, `20.5s`); 0 if unreadable."""
    parts = _DURATION_PART.findall(text or "")
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in parts)


def resource_metrics(listed: Obj, resource: str, container: str = "") -> dict[str, PodMetric]:
    """Per pod name, the usage of `resource` (of `container` only, when given).

    A pod whose containers do not all report the resource is left out (its
    metrics are missing); with `container`, a pod that does not report that
    container at all is an error, as upstream's metrics client has it.
    """
    items = listed.get("items") or []
    if not items:
        raise MetricsError("no metrics returned from resource metrics API")
    out: dict[str, PodMetric] = {}
    for item in items:
        name = meta.name(item)
        stamp = meta.parse_time(item["timestamp"]) if item.get("timestamp") else 0.0
        window = parse_duration(item.get("window") or "")
        containers = item.get("containers") or []
        if container:
            found = next((c for c in containers if c.get("name") == container), None)
            if found is None:
                raise MetricsError(
                    f"container {container} not present in metrics for pod "
                    f"{meta.namespace(item)}/{name}"
                )
            usage = (found.get("usage") or {}).get(resource)
            if usage is not None:
                out[name] = PodMetric(milli_value(usage), stamp, window)
            continue
        total = 0
        missing = not containers
        for c in containers:
            usage = (c.get("usage") or {}).get(resource)
            if usage is None:
                missing = True
                break
            total += milli_value(usage)
        if not missing:
            out[name] = PodMetric(total, stamp, window)
    return out
