"""One HPA metric → a proposed replica count and its `status.currentMetrics` entry.

Upstream's `computeReplicasForMetric` and `computeStatusForResourceMetric`:
a `Resource` metric averages one resource over the target's pods (the sum
over each pod's containers), a `ContainerResource` metric over one named
container; the target is a `Utilization` (percent of the pods' requests) or an
`AverageValue`. A failure is a `MetricFailure` carrying the reason upstream
gives its event and condition (FailedGetResourceMetric, ...) and its two
messages: the one for the event and condition, and the one (prefixed with
the metric) that goes into "invalid metrics (N invalid out of M), first error
is: ...".

The metrics API is asked at most once per reconcile (`Inputs.pod_metrics`),
however many metrics the HPA has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from nanokube.api import errors
from nanokube.api.validators import format_quantity
from nanokube.controllers.hpa_metrics import (
    MetricsError,
    PodMetricsLister,
    milli_value,
    resource_metrics,
)
from nanokube.controllers.hpa_replicas import ReplicaCalculator

Obj = dict[str, Any]

# Metric types whose APIs (custom.metrics.k8s.io, external.metrics.k8s.io) nanokube lacks.
_UNSERVED = {
    "Pods": ("FailedGetPodsMetric", "pods metric", "custom.metrics.k8s.io"),
    "Object": ("FailedGetObjectMetric", "object metric", "custom.metrics.k8s.io"),
    "External": ("FailedGetExternalMetric", "external metric", "external.metrics.k8s.io"),
}


class MetricFailure(Exception):
    """A metric gave no count: `reason` and `message` (event, condition), `error` (aggregate)."""

    def __init__(self, reason: str, message: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.message = message
        self.error = error


@dataclass
class Inputs:
    """What one reconcile knows about the target, shared by its metrics."""

    namespace: str
    selector: str  # the scale's label selector, as text
    pods: list[Obj]  # the pods it selects (from the informer cache)
    spec_replicas: int
    now: float
    lister: PodMetricsLister
    calculator: ReplicaCalculator
    _listed: Obj | None = field(default=None, repr=False)

    async def pod_metrics(self) -> Obj:
        """The PodMetricsList of the selected pods (fetched once)."""
        if self._listed is None:
            try:
                self._listed = await self.lister.pod_metrics_list(self.namespace, self.selector)
            except errors.StatusError as e:
                raise MetricsError(
                    f"unable to fetch metrics from resource metrics API: {e}"
                ) from None
        return self._listed


def milli_quantity(milli: int) -> str:
    """`resource.NewMilliQuantity(v, DecimalSI).String()`."""
    return format_quantity(Fraction(milli, 1000))


async def replicas_for_metric(metric: Obj, inputs: Inputs) -> tuple[int, str, Obj]:
    """(proposed replicas, the metric's name for events, its MetricStatus)."""
    kind = metric.get("type") or ""
    if kind in ("Resource", "ContainerResource"):
        return await _resource(metric, kind, inputs)
    if kind in _UNSERVED:
        reason, what, api = _UNSERVED[kind]
        message = f"unable to get {what}: no {api} API is served by this cluster"
        raise MetricFailure(reason, message, f"failed to get {what} value: {message}")
    message = f'unknown metric source type "{kind}"'
    raise MetricFailure("InvalidMetricSourceType", message, message)


async def _resource(metric: Obj, kind: str, inputs: Inputs) -> tuple[int, str, Obj]:
    container_metric = kind == "ContainerResource"
    source = metric.get("containerResource" if container_metric else "resource") or {}
    resource = source.get("name") or ""
    container = (source.get("container") or "") if container_metric else ""
    target = source.get("target") or {}
    reason = "FailedGetContainerResourceMetric" if container_metric else "FailedGetResourceMetric"
    scope = "container resource" if container_metric else "resource"
    calc = inputs.calculator

    def failure(message: str) -> MetricFailure:
        return MetricFailure(
            reason, message, f"failed to get {resource} {scope} metric value: {message}"
        )

    def status(current: Obj) -> Obj:
        body: Obj = {"name": resource}
        if container_metric:
            body["container"] = container
        body["current"] = current
        return {"type": kind, "containerResource" if container_metric else "resource": body}

    if target.get("averageValue") is not None:
        try:
            metrics = await _metrics(inputs, resource, container)
            replicas, usage = calc.raw_resource_replicas(
                inputs.spec_replicas,
                milli_value(target["averageValue"]),
                resource,
                inputs.pods,
                metrics,
                inputs.now,
            )
        except MetricsError as e:
            raise failure(f"failed to get {resource} usage: {e}") from None
        return replicas, f"{resource} {scope}", status({"averageValue": milli_quantity(usage)})
    utilization_target = target.get("averageUtilization")
    if utilization_target is None:
        raise failure(
            "invalid resource metric source: neither an average utilization target "
            "nor an average value (usage) target was set"
        )
    try:
        metrics = await _metrics(inputs, resource, container)
        replicas, utilization, raw = calc.resource_replicas(
            inputs.spec_replicas,
            int(utilization_target),
            resource,
            inputs.pods,
            metrics,
            inputs.now,
            container,
        )
    except MetricsError as e:
        raise failure(f"failed to get {resource} utilization: {e}") from None
    return (
        replicas,
        f"{resource} {scope} utilization (percentage of request)",
        status({"averageUtilization": utilization, "averageValue": milli_quantity(raw)}),
    )


async def _metrics(inputs: Inputs, resource: str, container: str) -> Any:
    try:
        return resource_metrics(await inputs.pod_metrics(), resource, container)
    except MetricsError as e:
        raise MetricsError(f"unable to get metrics for resource {resource}: {e}") from None
